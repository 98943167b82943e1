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
    h_prev: Float[Array, " n_in"],
    t: Float[Array, " n_out"],
    *,
    key: PRNGKeyArray | None = None,
) -> Float[Scalar, ""]:
    """Layer-local loss `||f(h_prev) - t||^2`, summed over units.

    Both `h_prev` (shape `(n_in,)`) and the target `t` (shape `(n_out,)`) are constants:
    the gradient reaches only the layer's forward parameters.
    """
    return jnp.sum((layer(sg(h_prev), key=key) - sg(t)) ** 2)


def output_loss(output, h_prev: Float[Array, " n_in"], y) -> Float[Scalar, ""]:
    """Cross-entropy of the output layer `output` on a constant input `h_prev`."""
    return cross_entropy(output(sg(h_prev)), y)


def reconstruction_loss(
    layer: AbstractDTPLayer,
    h_prev: Float[Array, " n_in"],
    *,
    sigma: float | Float[Scalar, ""] = 0.0,
    key: PRNGKeyArray | None = None,
) -> Float[Scalar, ""]:
    """Noise-preserving inverse loss `||g(f(h_prev + e)) - (h_prev + e)||^2`, `e ~ N(0, sigma^2 I)`.

    The reconstruction target is the corrupted activation, so the feedback mapping `g`
    learns to preserve the noise as well as the signal. Only `g`'s parameters receive a
    gradient (the forward output is held constant).

    Args:
        layer: the layer whose feedback mapping is trained.
        h_prev: the layer's input for one example, shape `(n_in,)`.
        sigma: standard deviation of the Gaussian corruption, `>= 0` (keyword-only).
            With `sigma = 0` this is the clean reconstruction error and `key` may be None.
        key: key for the noise (keyword-only); required when `sigma` may be nonzero.

    Returns:
        A scalar, summed over the `n_in` units.
    """
    check_nonnegative("sigma", sigma)
    h_prev = sg(h_prev)
    if isinstance(sigma, (int, float)) and sigma == 0:
        noisy = h_prev
    else:
        if key is None:
            raise ValueError("reconstruction_loss needs a key when sigma > 0.")
        noisy = h_prev + sigma * jax.random.normal(key, h_prev.shape, h_prev.dtype)
    h = sg(layer(noisy))
    return jnp.sum((layer.inverse(h) - noisy) ** 2)
