"""Per-example losses: layer-local target losses, the output loss and the inverse loss.

Every function here maps one unbatched example; batch with `jax.vmap` and average.
Inputs and targets of the local losses are held constant (`jax.lax.stop_gradient`),
so each loss trains only the parameters it is meant to train.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from ._layers import AbstractDTPLayer
from ._stochastic import StochasticBinary

sg = jax.lax.stop_gradient


def check_nonnegative(name: str, value) -> None:
    """Raise a `ValueError` naming `name` if a concrete `value` is negative or NaN."""
    if isinstance(value, (int, float)) and not value >= 0:
        raise ValueError(f"{name}={value!r} must be a non-negative number.")


def cross_entropy(
    logits: Float[Array, " n_classes"], y: Int[Array, ""] | int
) -> Float[Scalar, ""]:
    """Negative log-likelihood `-log softmax(logits)[y]` of one example."""
    return -jax.nn.log_softmax(logits)[y]


def layer_loss(
    layer: AbstractDTPLayer,
    h_prev: Float[Array, " ..."],
    t: Float[Array, " ..."],
    *,
    key: PRNGKeyArray | None = None,
) -> Float[Scalar, ""]:
    """Layer-local loss `||f(h_prev) - t||^2`, summed over units.

    Both `h_prev` (shape `layer.in_shape`, `(n_in,)` for a dense layer) and the target
    `t` (shape `layer.out_shape`) are constants: the gradient reaches only the layer's
    forward parameters.
    """
    return jnp.sum((layer(sg(h_prev), key=key) - sg(t)) ** 2)


def output_loss(output, h_prev: Float[Array, " n_in"], y) -> Float[Scalar, ""]:
    """Cross-entropy of the output layer `output` on a constant input `h_prev`."""
    return cross_entropy(output(sg(h_prev)), y)


def reconstruction_loss(
    layer: AbstractDTPLayer,
    h_prev: Float[Array, " ..."],
    *,
    sigma: float | Float[Scalar, ""] = 0.0,
    key: PRNGKeyArray | None = None,
    sampler: StochasticBinary | None = None,
) -> Float[Scalar, ""]:
    """Noise-preserving inverse loss `||g(f(h_prev + e)) - (h_prev + e)||^2`, `e ~ N(0, sigma^2 I)`.

    The reconstruction target is the corrupted activation, so the feedback mapping `g`
    learns to preserve the noise as well as the signal. Only `g`'s parameters receive a
    gradient (the forward output is held constant).

    For stochastic units, `h_prev` is the probability `p` of the layer below and
    `sampler` its `StochasticBinary`: the layer then reads a sample of the corrupted
    probability, `||g(f(b)) - (p + e)||^2` with `b ~ Bernoulli(p + e)` (a value above 1
    always fires, one below 0 never), as the original code trains the stochastic
    network's feedback mapping. `g` thus maps probabilities of this layer to
    probabilities of the layer below, which is how `dtp_eqx.compute_targets` uses it.

    Args:
        layer: the layer whose feedback mapping is trained.
        h_prev: the layer's input for one example (its probability, with `sampler`),
            shape `layer.in_shape` (`(n_in,)` for a dense layer).
        sigma: standard deviation of the Gaussian corruption, `>= 0` (keyword-only).
            With `sigma = 0` this is the clean reconstruction error and, without a
            `sampler`, `key` may be None.
        key: key for the noise and the sample (keyword-only); required when `sigma` may
            be nonzero or a `sampler` is given.
        sampler: the stochastic units between `h_prev` and the layer, if any
            (keyword-only).

    Returns:
        A scalar, summed over the layer's input units.
    """
    check_nonnegative("sigma", sigma)
    h_prev = sg(h_prev)
    clean = isinstance(sigma, (int, float)) and sigma == 0
    if key is None and not (clean and sampler is None):
        raise ValueError(
            "reconstruction_loss needs a key when sigma > 0 or a sampler is given."
        )
    if sampler is not None:
        key, sample_key = jax.random.split(key)
    noisy = h_prev if clean else (
        h_prev + sigma * jax.random.normal(key, h_prev.shape, h_prev.dtype)
    )
    read = noisy if sampler is None else sampler(noisy, key=sample_key)
    h = sg(layer(read))
    return jnp.sum((layer.inverse(h) - noisy) ** 2)


def network_reconstruction_losses(
    net,
    activations: tuple[Float[Array, " ..."], ...],
    *,
    sigma: float | Float[Scalar, ""] = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Array, " n_trained"]:
    """`reconstruction_loss` of each trained feedback mapping (layers `2 .. M-1`) of one example.

    Layer `i` reconstructs its input `h_{i-1}` from `activations` (as from
    `net.activations(x)`); in a stochastic network, the probability `p_{i-1}` through a
    fresh sample (see `reconstruction_loss`). Returns shape `(M - 2,)`.
    """
    sources = net.means(activations)
    keys = [None] * len(net.layers) if key is None else jax.random.split(key, len(net.layers))
    losses = [
        reconstruction_loss(
            layer,
            sources[i - 1],
            sigma=sigma,
            key=keys[i],
            sampler=net.samplers[i - 1] if net.samplers else None,
        )
        for i, layer in enumerate(net.layers)
        if i > 0
    ]
    return jnp.stack(losses) if losses else jnp.zeros((0,), activations[0].dtype)
