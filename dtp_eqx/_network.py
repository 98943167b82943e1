"""A deep network of DTP layers topped by a linear (logits) output layer."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import AbstractDTPLayer, DTPLayer, init_linear


class DTPNetwork(eqx.Module):
    """A multilayer perceptron trainable by difference target propagation or back-prop.

    With `sizes = (n_0, n_1, ..., n_M)` the network has `M - 1` hidden `DTPLayer`s,
    `h_i = f_i(h_{i-1})` for `i = 1 .. M-1` with `h_0 = x`, and a linear output layer
    giving the logits `h_M = W_M h_{M-1} + b_M`. Each hidden layer also carries a
    feedback mapping `g_i`; DTP uses those of layers `2 .. M-1` (nothing lies below
    layer 1 to receive a target, so layer 1's feedback is never trained).

    Args:
        sizes: layer widths `(n_in, hidden..., n_classes)`, at least three entries.
        activation: hidden nonlinearity, one of `dtp_eqx.ACTIVATIONS` (keyword-only).
        feedback_activation: nonlinearity of the feedback mappings; defaults to
            `activation` (keyword-only).
        init: `"orthogonal"` (the original code's) or `"glorot"` (keyword-only).
        key: a `jax.random` key, split once into one key per layer (keyword-only).

    Example:
        >>> import jax, dtp_eqx
        >>> net = dtp_eqx.DTPNetwork((784, 240, 240, 10), key=jax.random.key(0))
        >>> x = jax.numpy.zeros((32, 784))
        >>> jax.vmap(net)(x).shape              # logits for a batch
        (32, 10)
        >>> [h.shape for h in net.activations(x[0])]
        [(784,), (240,), (240,), (10,)]
    """

    layers: tuple[AbstractDTPLayer, ...]
    output: eqx.nn.Linear

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str = "tanh",
        feedback_activation: str | None = None,
        init: str = "orthogonal",
        key: PRNGKeyArray,
    ):
        sizes = tuple(sizes)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
            raise TypeError(f"sizes={sizes!r} must hold integers.")
        if len(sizes) < 3 or min(sizes) <= 0:
            raise ValueError(
                f"sizes={sizes!r} must be at least three positive integers "
                "(input size, one or more hidden sizes, number of classes)."
            )
        *layer_keys, output_key = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            DTPLayer(
                n_in,
                n_out,
                activation=activation,
                feedback_activation=feedback_activation,
                init=init,
                key=k,
            )
            for n_in, n_out, k in zip(sizes[:-2], sizes[1:-1], layer_keys)
        )
        self.output = init_linear(sizes[-2], sizes[-1], init=init, key=output_key)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths `(n_0, ..., n_M)`."""
        return (self.layers[0].in_features,) + tuple(
            layer.out_features for layer in self.layers
        ) + (self.output.out_features,)

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def n_classes(self) -> int:
        return self.output.out_features

    def check_input(self, x: Array) -> None:
        """Raise a `ValueError` unless `x` has shape `(n_in,)`."""
        if x.shape != (self.in_features,):
            raise ValueError(
                f"x has shape {x.shape}, expected one example of shape "
                f"({self.in_features},); batch with jax.vmap."
            )

    def activations(
        self, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " ..."], ...]:
        """Every activation of one example: `(h_0 = x, h_1, ..., h_{M-1}, h_M = logits)`.

        Args:
            x: one input, shape `(n_0,)`.
            key: unused by deterministic layers (keyword-only).

        Returns:
            A tuple of `M + 1` arrays of shapes `(n_0,), (n_1,), ..., (n_M,)`.
        """
        self.check_input(x)
        keys = (None,) * len(self.layers) if key is None else jax.random.split(
            key, len(self.layers)
        )
        hs = [x]
        for layer, k in zip(self.layers, keys):
            hs.append(layer(hs[-1], key=k))
        hs.append(self.output(hs[-1]))
        return tuple(hs)

    def __call__(
        self, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " n_classes"]:
        """The logits `h_M` of one example, shape `(n_M,)`."""
        return self.activations(x, key=key)[-1]
