"""Jacobian alignment of the feedback mappings: how close each `g_i`'s Jacobian is to the
transpose of `f_i`'s (what L-DRL trains for) and to an inverse of it (what the 2015
reconstruction loss trains for)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

EXACT_LIMIT = 1024
"""Largest activation size (units of a layer's input or output) for which
`jacobian_alignment` uses every basis vector as a probe, giving exact Frobenius norms."""


def _probes(key, shape, n_probes, dtype):
    """`(n, *shape)` probe vectors: the standard basis when `n_probes` is None, else
    `n_probes` standard normal draws (so `E ||A v||^2 = ||A||_F^2`)."""
    size = math.prod(shape)
    if n_probes is None:
        return jnp.eye(size, dtype=dtype).reshape((size, *shape))
    return jax.random.normal(key, (n_probes, *shape), dtype)


def _layer_alignment(layer, h_prev, h, *, key, probes):
    """Probe sums for one layer and one example: `||J_g - J_f^T||^2`, `||J_f^T||^2`,
    `||J_g||^2`, `<J_g, J_f^T>` over probes `v` in `h`'s space, and `||J_g J_f - I||^2`
    over probes in `h_prev`'s space (each a sum of squares over the probes)."""
    out_key, in_key = jax.random.split(key)
    # J_f^T v by a vector-Jacobian product of f at h_prev; J_g v by a Jacobian-vector
    # product of g at h
    _, f_vjp = jax.vjp(lambda a: layer(a), h_prev)
    jg = lambda v: jax.jvp(layer.inverse, (h,), (v,))[1]  # noqa: E731
    jf = lambda u: jax.jvp(lambda a: layer(a), (h_prev,), (u,))[1]  # noqa: E731
    vs = _probes(out_key, h.shape, probes, h.dtype)
    gv = jax.vmap(jg)(vs)
    ftv = jax.vmap(lambda v: f_vjp(v)[0])(vs)
    us = _probes(in_key, h_prev.shape, probes, h_prev.dtype)
    round_trip = jax.vmap(lambda u: jg(jf(u)) - u)(us)
    n = vs.shape[0] if probes is not None else 1
    m = us.shape[0] if probes is not None else 1
    return {
        "diff": jnp.sum((gv - ftv) ** 2) / n,
        "ft": jnp.sum(ftv**2) / n,
        "g": jnp.sum(gv**2) / n,
        "inner": jnp.sum(gv * ftv) / n,
        "inverse": jnp.sum(round_trip**2) / m,
        "identity": jnp.asarray(math.prod(h_prev.shape), h.dtype),
    }


@eqx.filter_jit
def _alignment_impl(net, x, key, probes):
    keys = jax.random.split(key, x.shape[0])
    hs = jax.vmap(lambda xi: net.activations(xi))(x)
    rows = []
    for i in range(1, len(net.layers)):
        sums = jax.vmap(
            lambda a, b, k, i=i: _layer_alignment(net.layers[i], a, b, key=k, probes=probes)
        )(hs[i], hs[i + 1], keys)
        rows.append(jax.tree.map(jnp.mean, sums))
    stacked = {k: jnp.stack([r[k] for r in rows]) for k in rows[0]} if rows else None
    return stacked


def jacobian_alignment(
    net,
    x: Float[Array, "batch n_in"],
    *,
    probes: int | None | str = "auto",
    key: PRNGKeyArray | None = None,
) -> dict[str, Float[Array, " n_trained"]]:
    """How well each trained feedback mapping's Jacobian matches its layer's forward one.

    For layers `i = 2 .. M-1`, with `J_f` the Jacobian of `f_i` at `h_{i-1}` and `J_g`
    that of `g_i` at `h_i = f_i(h_{i-1})`, and squared norms averaged over the batch `x`:

    - `"transpose_error"`: `||J_g - J_f^T||_F / ||J_f^T||_F`, 0 when the feedback is
      back-prop's transpose (the fixed point of L-DRL).
    - `"transpose_angle"`: the angle in degrees between `J_g` and `J_f^T` as vectors,
      blind to scale (0 when `J_g` is a positive multiple of `J_f^T`).
    - `"inverse_error"`: `||J_g J_f - I||_F / ||I||_F`, 0 when `g` inverts `f` to first
      order (the aim of the 2015 reconstruction loss and, for one layer, of DRL).

    Norms are sums of squares over probe vectors `v`, `||A||_F^2 = sum_v ||A v||^2`:
    exact with the standard basis, or estimated with Gaussian probes
    (`E ||A v||^2 = ||A||_F^2`), which stays cheap for convolutional layers.

    Args:
        net: a `DTPNetwork` with deterministic units.
        x: inputs, shape `(batch, n_0)`.
        probes: `None` for exact norms (every basis vector), an integer number of
            Gaussian probes, or `"auto"` (exact while every layer's input and output
            have at most `EXACT_LIMIT` units, else 64 probes) (keyword-only).
        key: key for the Gaussian probes (keyword-only).

    Returns:
        A dict of arrays of shape `(M - 2,)`, one entry per layer `2 .. M-1`.
    """
    if net.stochastic:
        raise ValueError(
            "jacobian_alignment needs deterministic units; this network samples its "
            "units (units='bernoulli')."
        )
    if len(net.layers) < 2:
        raise ValueError(
            f"net has {len(net.layers)} hidden layer(s); jacobian_alignment compares "
            "the feedback mappings of layers 2 .. M-1, so it needs at least two."
        )
    if probes == "auto":
        hs = net.activations(x[0])
        big = max(h.size for h in hs[:-1])
        probes = None if big <= EXACT_LIMIT else 64
    if probes is not None and not (
        isinstance(probes, int) and not isinstance(probes, bool) and probes >= 1
    ):
        raise ValueError(
            f"probes={probes!r} must be None (exact), a positive integer or 'auto'."
        )
    key = jax.random.key(0) if key is None else key
    s = _alignment_impl(net, x, key, probes)
    cos = s["inner"] / jnp.sqrt(s["g"] * s["ft"])
    return {
        "transpose_error": jnp.sqrt(s["diff"] / s["ft"]),
        "transpose_angle": jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))),
        "inverse_error": jnp.sqrt(s["inverse"] / s["identity"]),
    }
