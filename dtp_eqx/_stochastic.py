"""Stochastic binary units, built like `eqx.nn.Dropout`."""

from __future__ import annotations

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray


class StochasticBinary(eqx.Module):
    """Stochastic binary units: `b ~ Bernoulli(p)` for probabilities `p` (e.g. a sigmoid).

    Built like `eqx.nn.Dropout`: randomness enters through an explicit `key` at call
    time, and an `inference` flag (switched by `eqx.nn.inference_mode`) makes the unit
    deterministic, returning `p` itself. A sample has zero derivative with respect to `p`;
    with `straight_through=True` it passes the derivative of `p` instead
    (`b = p + stop_gradient(b - p)`), the straight-through estimator.

    Attributes:
        inference: return `p` instead of sampling.
        straight_through: give samples the derivative of `p`.

    Example:
        >>> unit = dtp_eqx.StochasticBinary()
        >>> p = jax.numpy.full(5, 0.3)
        >>> unit(p, key=jax.random.key(0))               # zeros and ones, shape (5,)
        >>> eqx.nn.inference_mode(unit)(p)                # p itself, no key needed
    """

    inference: bool = False
    straight_through: bool = False

    def __call__(
        self,
        p: Float[Array, " n"],
        *,
        key: PRNGKeyArray | None = None,
        inference: bool | None = None,
    ) -> Float[Array, " n"]:
        """A sample of shape `(n,)` with entries in {0, 1}, or `p` in inference mode.

        Args:
            p: probabilities in [0, 1], shape `(n,)` (any shape works).
            key: a `jax.random` key; required unless in inference mode (keyword-only).
            inference: overrides the `inference` attribute for this call (keyword-only).

        Raises:
            RuntimeError: when sampling without a key.
        """
        inference = self.inference if inference is None else inference
        if inference:
            return p
        if key is None:
            raise RuntimeError(
                "StochasticBinary samples, so it needs a key: call it with key=..., or "
                "switch it to inference mode (eqx.nn.inference_mode) to return p."
            )
        b = jax.random.bernoulli(key, p).astype(p.dtype)
        if self.straight_through:
            return p + jax.lax.stop_gradient(b - p)
        return jax.lax.stop_gradient(b)
