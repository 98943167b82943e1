"""A deep network of DTP layers topped by a linear (logits) output layer."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from ._config import check_positive_int
from ._layers import AbstractDTPLayer, DiscreteDTPLayer, DTPLayer, check_choice, init_linear
from ._stochastic import StochasticBinary

UNITS = ("continuous", "sign", "bernoulli")
"""Kinds of hidden units a `DTPNetwork` can have."""


class DTPNetwork(eqx.Module):
    """A multilayer perceptron trainable by difference target propagation or back-prop.

    With `sizes = (n_0, n_1, ..., n_M)` the network has `M - 1` hidden layers,
    `h_i = f_i(h_{i-1})` for `i = 1 .. M-1` with `h_0 = x`, and a linear output layer
    giving the logits `h_M = W_M h_{M-1} + b_M`. Each hidden layer also carries a
    feedback mapping `g_i`; DTP uses those of layers `2 .. M-1` (nothing lies below
    layer 1 to receive a target, so layer 1's feedback is never trained).

    `units` chooses the hidden units:

    - `"continuous"`: `DTPLayer` layers, `h_i = s(W_i h_{i-1} + b_i)`.
    - `"sign"`: the paper's discrete network: layer 1 is a `DTPLayer` and every later
      layer a `DiscreteDTPLayer`, which reads only the sign of its input (and whose
      feedback reads the sign of its output).
    - `"bernoulli"`: stochastic binary units. Layer `i` gives probabilities
      `p_i = sigmoid(W_i h_{i-1} + b_i)` (so `activation` must be `"sigmoid"`) and
      `h_i ~ Bernoulli(p_i)` is sampled by `samplers[i - 1]`, a `StochasticBinary`;
      `activations` then needs a key.

    `DTPNetwork.from_layers` builds a network from given hidden layers instead, such as
    the convolutional ones of `dtp_eqx.conv_network`; their activations may then be
    images, of the shapes in `shapes`.

    Args:
        sizes: layer widths `(n_in, hidden..., n_classes)`, at least three entries.
        activation: hidden nonlinearity, one of `dtp_eqx.ACTIVATIONS` (keyword-only).
        feedback_activation: nonlinearity of the feedback mappings; defaults to
            `activation` (keyword-only).
        init: `"orthogonal"` (the original code's) or `"glorot"` (keyword-only).
        units: one of `dtp_eqx.UNITS` (keyword-only).
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
    samplers: tuple[StochasticBinary, ...]

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str = "tanh",
        feedback_activation: str | None = None,
        init: str = "orthogonal",
        units: str = "continuous",
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
        check_choice("units", units, UNITS)
        if units == "bernoulli" and activation != "sigmoid":
            raise ValueError(
                f"units='bernoulli' samples from probabilities, so activation must be "
                f"'sigmoid', not {activation!r}."
            )
        *layer_keys, output_key = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            (DiscreteDTPLayer if units == "sign" and i > 0 else DTPLayer)(
                n_in,
                n_out,
                activation=activation,
                feedback_activation=feedback_activation,
                init=init,
                key=k,
            )
            for i, (n_in, n_out, k) in enumerate(zip(sizes[:-2], sizes[1:-1], layer_keys))
        )
        self.output = init_linear(sizes[-2], sizes[-1], init=init, key=output_key)
        self.samplers = (
            tuple(StochasticBinary() for _ in self.layers) if units == "bernoulli" else ()
        )

    @classmethod
    def from_layers(
        cls,
        layers: Sequence[AbstractDTPLayer],
        n_classes: int,
        *,
        init: str = "orthogonal",
        key: PRNGKeyArray,
    ) -> DTPNetwork:
        """A network of the given hidden layers topped by a new linear output layer.

        The layers may be any `AbstractDTPLayer`s whose shapes chain: each one's
        `in_shape` is the `out_shape` of the one before, as with `dtp_eqx.ImageLayer`,
        `dtp_eqx.ConvDTPLayer`, `dtp_eqx.FlattenLayer` and `DTPLayer` (see
        `dtp_eqx.conv_network`). The output layer reads a vector, so the last layer's
        `out_shape` must be one-dimensional, `(n_{M-1},)`; it gives the logits
        `h_M = W_M h_{M-1} + b_M`. The units are deterministic (no samplers).

        Args:
            layers: the hidden layers `1 .. M-1`, at least one.
            n_classes: number `n_M` of classes (logits).
            init: initialisation of the output weights, `"orthogonal"` or `"glorot"`;
                its bias starts at zero (keyword-only).
            key: a `jax.random` key for the output layer (keyword-only).

        Raises:
            TypeError: for a layer that is not an `AbstractDTPLayer`.
            ValueError: for no layers, a layer whose `in_shape` differs from the
                previous layer's `out_shape` (the message names the layer's index, both
                shapes and what was expected), a last layer whose output is not a
                vector, or an `n_classes` that is not a positive integer.

        Example:
            >>> layers = [dtp_eqx.ImageLayer((8, 8, 1)),
            ...           dtp_eqx.ConvDTPLayer((1, 8, 8), 4, key=jax.random.key(1)),
            ...           dtp_eqx.FlattenLayer((4, 4, 4))]
            >>> net = dtp_eqx.DTPNetwork.from_layers(layers, 10, key=jax.random.key(2))
            >>> net.shapes
            ((64,), (1, 8, 8), (4, 4, 4), (64,), (10,))
        """
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers is empty: a DTPNetwork needs at least one hidden layer.")
        for i, layer in enumerate(layers):
            if not isinstance(layer, AbstractDTPLayer):
                raise TypeError(
                    f"layers[{i}] is a {type(layer).__name__}, not an AbstractDTPLayer."
                )
            if i and layer.in_shape != layers[i - 1].out_shape:
                raise ValueError(
                    f"layers[{i}] ({type(layer).__name__}) reads inputs of shape "
                    f"{layer.in_shape}, but layers[{i - 1}] "
                    f"({type(layers[i - 1]).__name__}) outputs shape "
                    f"{layers[i - 1].out_shape}; expected layers[{i}].in_shape == "
                    f"{layers[i - 1].out_shape}."
                )
        if len(layers[-1].out_shape) != 1:
            raise ValueError(
                f"the last layer, layers[{len(layers) - 1}] ({type(layers[-1]).__name__}), "
                f"outputs shape {layers[-1].out_shape}, but the output layer reads a "
                "vector: end with a dtp_eqx.FlattenLayer (and dense DTPLayers, if any)."
            )
        n_classes = check_positive_int("n_classes", n_classes)
        output = init_linear(layers[-1].out_features, n_classes, init=init, key=key)
        # Built field by field, as equinox rebuilds a module from its leaves: the
        # `sizes` constructor above stays the one way that makes layers itself.
        net = object.__new__(cls)
        for name, value in (("layers", layers), ("output", output), ("samplers", ())):
            object.__setattr__(net, name, value)
        return net

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths `(n_0, ..., n_M)`: the sizes (products of the shapes) of every
        activation, for layers of any shape."""
        return (self.layers[0].in_features,) + tuple(
            layer.out_features for layer in self.layers
        ) + (self.output.out_features,)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of one example's activations `h_0, ..., h_M`: `((n_0,), ..., (n_M,))`
        for a dense network, `(C, H, W)` for the images of a convolutional one."""
        return (self.layers[0].in_shape,) + tuple(
            layer.out_shape for layer in self.layers
        ) + ((self.output.out_features,),)

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def n_classes(self) -> int:
        return self.output.out_features

    @property
    def stochastic(self) -> bool:
        """Whether the hidden units sample (so a forward pass needs a key)."""
        return bool(self.samplers)

    def check_input(self, x: Array) -> None:
        """Raise a `ValueError` unless `x` has the shape of one input, `self.shapes[0]`
        (`(n_in,)` for a dense network)."""
        if x.shape != self.layers[0].in_shape:
            raise ValueError(
                f"x has shape {x.shape}, expected one example of shape "
                f"{self.layers[0].in_shape}; batch with jax.vmap."
            )

    def activations(
        self, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " ..."], ...]:
        """Every activation of one example: `(h_0 = x, h_1, ..., h_{M-1}, h_M = logits)`.

        Args:
            x: one input, shape `(n_0,)`.
            key: key for sampling stochastic units; unused by deterministic ones
                (keyword-only).

        Returns:
            A tuple of `M + 1` arrays of shapes `(n_0,), (n_1,), ..., (n_M,)`.

        Raises:
            ValueError: for an input of the wrong shape.
            RuntimeError: for stochastic units in training mode without a key.
        """
        self.check_input(x)
        hs = [x]
        if self.samplers:
            keys = (None,) * len(self.layers) if key is None else jax.random.split(
                key, len(self.layers)
            )
            for layer, sampler, k in zip(self.layers, self.samplers, keys):
                hs.append(sampler(layer(hs[-1]), key=k))
        else:
            for layer in self.layers:
                hs.append(layer(hs[-1]))
        hs.append(self.output(hs[-1]))
        return tuple(hs)

    def means(
        self, activations: tuple[Float[Array, " ..."], ...]
    ) -> tuple[Float[Array, " ..."], ...]:
        """The hidden layers' outputs before sampling, `p_i = f_i(h_{i-1})`, for one example.

        Equal to `(h_1, ..., h_{M-1})` for deterministic units; for stochastic units, the
        probabilities the samples `h_i` were drawn from. Shapes `(n_1,), ..., (n_{M-1},)`.
        """
        if not self.samplers:
            return tuple(activations[1:-1])
        return tuple(layer(h) for layer, h in zip(self.layers, activations[:-2]))

    def __call__(
        self, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " n_classes"]:
        """The logits `h_M` of one example, shape `(n_M,)`."""
        return self.activations(x, key=key)[-1]


def _switch(model, cls, attribute: str, value):
    """`model` with `attribute` set to `value` on every submodule of type `cls`."""
    is_target = lambda x: isinstance(x, cls)  # noqa: E731
    targets = [m for m in jax.tree.leaves(model, is_leaf=is_target) if is_target(m)]
    if not targets:
        return model
    return eqx.tree_at(
        lambda m: [getattr(t, attribute) for t in jax.tree.leaves(m, is_leaf=is_target)
                   if is_target(t)],
        model,
        [value] * len(targets),
    )


def straight_through(model):
    """`model` with the straight-through estimator on every discrete or stochastic unit.

    Forward values are unchanged; back-propagation then treats `sign` as the identity
    (`DiscreteDTPLayer.sign_mode = "straight-through"`) and a Bernoulli sample as its
    probability (`StochasticBinary.straight_through = True`).
    """
    model = _switch(model, DiscreteDTPLayer, "sign_mode", "straight-through")
    return _switch(model, StochasticBinary, "straight_through", True)


def continuous(model):
    """`model` with every sign unit replaced by the identity (`sign_mode = "continuous"`).

    This is the continuous relaxation that the original code's second discrete baseline
    trained by back-prop before putting `sign` back in at test time.
    """
    return _switch(model, DiscreteDTPLayer, "sign_mode", "continuous")


def with_sign(model):
    """`model` with every `DiscreteDTPLayer` back to the true sign (`sign_mode = "sign"`)."""
    return _switch(model, DiscreteDTPLayer, "sign_mode", "sign")
