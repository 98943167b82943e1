"""Targets: one gradient step at the top, then down through the feedback mappings."""

from __future__ import annotations

import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._layers import check_choice
from ._losses import cross_entropy

METHODS = ("dtp", "tp")
"""Target propagation rules: difference target propagation and vanilla target propagation."""


def top_target(
    output, h_top: Float[Array, " n"], y, *, top_step: float | Float[Array, ""]
) -> Float[Array, " n"]:
    """First target `t_{M-1} = h_{M-1} - top_step * dL/dh_{M-1}` with per-example cross-entropy."""
    grad = jax.grad(lambda h: cross_entropy(output(h), y))(h_top)
    return h_top - top_step * grad


def check_label(y, n_classes: int | None) -> None:
    """Raise a `ValueError` unless a concrete `y` is one integer class label in
    `[0, n_classes)` (shape `()`). A traced `y` (inside `jit` or `vmap`) is not checked;
    neither is the range when `n_classes` is None."""
    if isinstance(y, jax.core.Tracer):
        return
    expected = "an integer class label" + (
        "" if n_classes is None else f" in [0, {n_classes - 1}]"
    )
    try:
        label = np.asarray(y)
    except (TypeError, ValueError):
        raise ValueError(f"y={y!r} must be {expected}.") from None
    if (isinstance(y, (bool, np.bool_)) or label.shape != ()
            or not np.issubdtype(label.dtype, np.integer)):
        raise ValueError(
            f"y={y!r} (shape {label.shape}, dtype {label.dtype}) must be {expected}: one "
            "example's label, shape (), of an integer dtype (batch with jax.vmap)."
        )
    if n_classes is not None and not 0 <= int(label) < n_classes:
        raise ValueError(
            f"y={int(label)} is out of range: the network has {n_classes} classes, so a "
            f"label must lie in [0, {n_classes - 1}]."
        )


def compute_targets(
    net,
    activations: tuple[Float[Array, " ..."], ...],
    y: Int[ArrayLike, ""],
    *,
    top_step: float | Float[Array, ""],
    method: str = "dtp",
) -> tuple[Float[Array, " ..."], ...]:
    """Targets `(t_1, ..., t_{M-1})` for the hidden layers of one example.

    The penultimate layer's target is one gradient step on the example's cross-entropy
    `L`: `t_{M-1} = h_{M-1} - top_step * dL/dh_{M-1}`. Below it, for `i = M-1 .. 2`:

    - `"dtp"` (difference target propagation): `t_{i-1} = h_{i-1} + g_i(t_i) - g_i(h_i)`.
      The difference cancels the inverse's error: `t_i = h_i` gives `t_{i-1} = h_{i-1}`
      whatever `g_i` is, and with an exact inverse it equals `"tp"`.
    - `"tp"` (vanilla target propagation): `t_{i-1} = g_i(t_i)`.

    With stochastic units (`net.means(activations)` differs from the samples), targets
    live on the probabilities `p_i = f_i(h_{i-1})`, as in the paper's stochastic network:
    the first target is moved from the sample to the probability,
    `t_{M-1} = p_{M-1} + (h_{M-1} - top_step * dL/dh_{M-1}) - h_{M-1}`, and the
    difference correction reads `t_{i-1} = p_{i-1} + g_i(t_i) - g_i(p_i)`. The layer-local
    loss `||f_i(h_{i-1}) - t_i||^2` then trains the probabilities.

    `top_step` and the original code's `eta`: the original code steps along the gradient of
    the *batch-mean* loss, whose gradient with respect to one example's `h_{M-1}` is the
    per-example gradient divided by the batch size `B`. So `top_step = eta / B`
    (`eta = 0.327736`, `B = 100` gives `top_step = 0.00327736` for the deep tanh network);
    see `dtp_eqx.top_step_from_eta`.

    Args:
        net: a `DTPNetwork` (anything with `layers`, `output` and `means`).
        activations: `(h_0, ..., h_M)` of one example, as from `net.activations(x)`,
            shapes `(n_0,), ..., (n_M,)`.
        y: the example's integer class label, in `[0, n_classes)` (a Python int or an
            integer array of shape `()`).
        top_step: step size of the first target, per example (keyword-only).
        method: `"dtp"` or `"tp"` (keyword-only).

    Returns:
        A tuple of `M - 1` targets with shapes `(n_1,), ..., (n_{M-1},)`.

    Raises:
        ValueError: for an unknown `method`, a wrong number of activations, or (when `y`
            is concrete, not traced inside `jit` or `vmap`) a `y` that is not one integer
            label in `[0, n_classes)`.

    Example:
        >>> import jax, dtp_eqx
        >>> net = dtp_eqx.DTPNetwork((4, 3, 3, 2), key=jax.random.key(0))
        >>> hs = net.activations(jax.numpy.ones(4))
        >>> ts = dtp_eqx.compute_targets(net, hs, 1, top_step=0.1)
        >>> [t.shape for t in ts]
        [(3,), (3,)]
    """
    check_choice("method", method, METHODS)
    check_label(y, getattr(getattr(net, "output", None), "out_features", None))
    hs = activations
    if len(hs) != len(net.layers) + 2:
        raise ValueError(
            f"activations has {len(hs)} entries, expected {len(net.layers) + 2} "
            "(h_0 .. h_M, as returned by net.activations)."
        )
    # ps[i - 1] is p_i = f_i(h_{i-1}), which is h_i itself for deterministic units.
    ps = net.means(hs)
    # The first target is a step on the sample h_{M-1}, moved onto p_{M-1}.
    # Differences first: a zero step then gives targets exactly on the activations.
    t = ps[-1] + (top_target(net.output, hs[-2], y, top_step=top_step) - hs[-2])
    targets = [t]
    # net.layers[i - 1] is layer i, whose feedback g_i maps layer i's space to layer i-1's.
    for i in range(len(net.layers), 1, -1):
        g = net.layers[i - 1].inverse
        if method == "dtp":
            t = ps[i - 2] + (g(t) - g(ps[i - 1]))
        else:
            t = g(t)
        targets.append(t)
    return tuple(reversed(targets))


def top_step_from_eta(eta: float | np.floating, batch_size: int | np.integer) -> float:
    """Per-example `top_step` equal to the original code's batch-mean step `eta`:
    `eta / batch_size` (Python or NumPy numbers; a Python float is returned)."""
    return float(eta / batch_size)
