"""Layers with a forward mapping f and a learned feedback (approximate inverse) mapping g."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def check_choice(name: str, value: object, choices) -> None:
    """Raise a `ValueError` naming `name` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"{name}={value!r} is not supported; expected one of {sorted(choices)}."
        )


def init_linear(
    in_features: int, out_features: int, *, init: str, key: PRNGKeyArray
) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` with `init` weights (shape `(out, in)`) and zero bias."""
    check_choice("init", init, INITS)
    make_key, weight_key = jax.random.split(key)
    linear = eqx.nn.Linear(in_features, out_features, key=make_key)
    shape = (out_features, in_features)
    if init == "orthogonal":
        weight = jax.nn.initializers.orthogonal()(weight_key, shape)
    else:
        weight = jax.nn.initializers.glorot_uniform(in_axis=-1, out_axis=-2)(
            weight_key, shape
        )
    bias = jnp.zeros((out_features,), weight.dtype)
    return eqx.tree_at(lambda l: (l.weight, l.bias), linear, (weight, bias))


SIGN_MODES = ("sign", "straight-through", "continuous")
"""How a sign unit behaves: a true sign (zero derivative), a sign whose derivative is
taken as the identity (the straight-through estimator), or no sign at all (identity)."""


def sign(x: Float[Array, " ..."], *, mode: str = "sign") -> Float[Array, " ..."]:
    """Element-wise sign, `+1` for `x >= 0` and `-1` otherwise, by `mode`.

    - `"sign"`: the true sign; its derivative is zero, so back-propagation stops here.
    - `"straight-through"`: the same values, with the derivative of the identity.
    - `"continuous"`: the identity (for training a continuous relaxation).

    Args:
        x: any shape.
        mode: one of `dtp_eqx.SIGN_MODES` (keyword-only).

    Returns:
        An array shaped like `x`.
    """
    check_choice("mode", mode, SIGN_MODES)
    if mode == "continuous":
        return x
    s = jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)
    if mode == "straight-through":
        return x + jax.lax.stop_gradient(s - x)
    return jax.lax.stop_gradient(s)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "identity": lambda z: z,
    "sign": sign,
}
"""Element-wise nonlinearities a layer can use, by name."""

INITS = ("orthogonal", "glorot")
"""Weight initialisations: random (semi-)orthogonal, as the original code, or Glorot uniform."""


def check_activations(activation: str, feedback_activation: str | None) -> tuple[str, str]:
    """The checked activation names of a layer; the feedback's defaults to the forward's."""
    check_choice("activation", activation, ACTIVATIONS)
    if feedback_activation is None:
        feedback_activation = activation
    check_choice("feedback_activation", feedback_activation, ACTIVATIONS)
    return activation, feedback_activation


def make_mappings(in_features, out_features, activation, feedback_activation, init, key):
    """Forward and feedback `eqx.nn.Linear`s and the checked activation names of a layer."""
    activation, feedback_activation = check_activations(activation, feedback_activation)
    forward_key, feedback_key = jax.random.split(key)
    forward = init_linear(in_features, out_features, init=init, key=forward_key)
    feedback = init_linear(out_features, in_features, init=init, key=feedback_key)
    return forward, feedback, activation, feedback_activation


class AbstractDTPLayer(eqx.Module):
    """A layer that maps activations up with `f` and targets down with `g`.

    Subclasses own the fields `forward` and `feedback` and implement `__call__` (the
    forward mapping `f`, from `h_prev` to `h`) and `inverse` (the feedback mapping `g`,
    from `h` back to the space of `h_prev`). Both act on one unbatched example.

    An example's activations may be vectors (dense layers) or arrays of any shape, such
    as `(channels, height, width)` images (`dtp_eqx.ConvDTPLayer`): `in_shape` and
    `out_shape` give them, and `in_features` and `out_features` their sizes. A layer
    with other than vector activations overrides `in_shape` and `out_shape`.
    """

    forward: eqx.AbstractVar[eqx.Module]
    feedback: eqx.AbstractVar[eqx.Module]

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input `h_prev`: `(n_in,)` for a dense layer."""
        return (self.forward.in_features,)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of one output `h`: `(n_out,)` for a dense layer."""
        return (self.forward.out_features,)

    @property
    def in_features(self) -> int:
        """Size of the layer's input `h_prev` (the product of `in_shape`)."""
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        """Size of the layer's output `h` (the product of `out_shape`)."""
        return math.prod(self.out_shape)

    @abc.abstractmethod
    def __call__(
        self, h_prev: Float[Array, " n_in"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " n_out"]:
        """The forward mapping `f(h_prev)`."""

    @abc.abstractmethod
    def inverse(self, h: Float[Array, " n_out"]) -> Float[Array, " n_in"]:
        """The feedback mapping `g(h)`, an approximate inverse of `f`."""


class _ActivatedLayer(AbstractDTPLayer):
    """`f(h) = s(forward(h))` and `g(h) = s_g(feedback(h))` with named activations."""

    activation: eqx.AbstractVar[str]
    feedback_activation: eqx.AbstractVar[str]

    def __call__(
        self, h_prev: Float[Array, " n_in"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " n_out"]:
        """`f(h_prev) = s(W h_prev + b)` for one example; `key` is unused."""
        del key
        return ACTIVATIONS[self.activation](self.forward(h_prev))

    def inverse(self, h: Float[Array, " n_out"]) -> Float[Array, " n_in"]:
        """`g(h) = s_g(V h + c)` for one example (`V = W^T` when the weights are tied)."""
        return ACTIVATIONS[self.feedback_activation](self.feedback(h))


class DTPLayer(_ActivatedLayer):
    """A fully connected layer `f(h) = s(W h + b)` with feedback `g(h) = s_g(V h + c)`.

    `forward` holds `W` (shape `(n_out, n_in)`) and `b`; `feedback` holds `V` (shape
    `(n_in, n_out)`) and `c`. Difference target propagation trains `feedback` to invert
    `forward` (see `dtp_eqx.reconstruction_loss`) and `forward` to reach targets sent down
    through the feedback mappings of the layers above (see `dtp_eqx.compute_targets`).

    Args:
        in_features: size `n_in` of the layer's input `h_prev`.
        out_features: size `n_out` of the layer's output `h`.
        activation: name of `s`, one of `dtp_eqx.ACTIVATIONS` (keyword-only).
        feedback_activation: name of `s_g`; defaults to `activation` (keyword-only).
        init: `"orthogonal"` (the original code's) or `"glorot"`; biases start at zero
            (keyword-only).
        key: a `jax.random` key, split once between the two mappings (keyword-only).

    Example:
        >>> import jax, dtp_eqx
        >>> layer = dtp_eqx.DTPLayer(4, 3, activation="tanh", key=jax.random.key(0))
        >>> h = layer(jax.numpy.ones(4))        # shape (3,)
        >>> layer.inverse(h).shape              # back in the input space
        (4,)
    """

    forward: eqx.nn.Linear
    feedback: eqx.nn.Linear
    activation: str = eqx.field(static=True)
    feedback_activation: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str = "tanh",
        feedback_activation: str | None = None,
        init: str = "orthogonal",
        key: PRNGKeyArray,
    ):
        self.forward, self.feedback, self.activation, self.feedback_activation = (
            make_mappings(
                in_features, out_features, activation, feedback_activation, init, key
            )
        )


class DiscreteDTPLayer(AbstractDTPLayer):
    """A layer that reads the *sign* of its input: `f(h) = s(W sign(h) + b)`, `g(h) = s_g(V sign(h) + c)`.

    The second layer of the paper's discrete network: below it, `h_1 = tanh(W_1 x + b_1)`
    is continuous, but only its sign reaches layer 2, and the feedback mapping reads the
    sign of `h_2`. Back-propagation gets a zero derivative through `sign`, so nothing
    below this layer learns by it; difference target propagation sends targets down
    through `g` and never differentiates through `sign`.

    Args:
        in_features, out_features, activation, feedback_activation, init, key: as for
            `DTPLayer`.
        sign_mode: one of `dtp_eqx.SIGN_MODES` (keyword-only): `"sign"` (default),
            `"straight-through"` (the straight-through estimator's derivative), or
            `"continuous"` (no sign: the continuous relaxation). `dtp_eqx.straight_through`
            and `dtp_eqx.continuous` switch it on a whole network.

    Example:
        >>> layer = dtp_eqx.DiscreteDTPLayer(4, 3, key=jax.random.key(0))
        >>> layer(jax.numpy.array([0.2, -0.1, 0.7, -0.9])).shape    # reads (1, -1, 1, -1)
        (3,)
    """

    forward: eqx.nn.Linear
    feedback: eqx.nn.Linear
    activation: str = eqx.field(static=True)
    feedback_activation: str = eqx.field(static=True)
    sign_mode: str = "sign"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str = "tanh",
        feedback_activation: str | None = None,
        init: str = "orthogonal",
        sign_mode: str = "sign",
        key: PRNGKeyArray,
    ):
        check_choice("sign_mode", sign_mode, SIGN_MODES)
        self.forward, self.feedback, self.activation, self.feedback_activation = (
            make_mappings(
                in_features, out_features, activation, feedback_activation, init, key
            )
        )
        self.sign_mode = sign_mode

    def __call__(
        self, h_prev: Float[Array, " n_in"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " n_out"]:
        """`f(h_prev) = s(W sign(h_prev) + b)` for one example; `key` is unused."""
        del key
        return ACTIVATIONS[self.activation](self.forward(sign(h_prev, mode=self.sign_mode)))

    def inverse(self, h: Float[Array, " n_out"]) -> Float[Array, " n_in"]:
        """`g(h) = s_g(V sign(h) + c)` for one example."""
        return ACTIVATIONS[self.feedback_activation](
            self.feedback(sign(h, mode=self.sign_mode))
        )


class TiedLinear(eqx.Module):
    """`x -> weight @ x + bias`: the decoder of a `TiedDTPLayer`, its encoder's `W^T` and
    its own bias `c`. Built on the fly from the encoder (`weight`, shape `(n_in, n_out)`),
    so it holds no parameters of its own beyond what the layer stores."""

    weight: Float[Array, "n_in n_out"]
    bias: Float[Array, " n_in"]

    @property
    def in_features(self) -> int:
        return self.weight.shape[-1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[-2]

    def __call__(self, x: Float[Array, " n_out"]) -> Float[Array, " n_in"]:
        return self.weight @ x + self.bias


class TiedDTPLayer(_ActivatedLayer):
    """A layer whose feedback mapping shares the forward weights: `f(h) = s(W h + b)`,
    `g(h) = s_g(W^T h + c)`: the tied-weight auto-encoder of the paper.

    `forward` holds `W` (shape `(n_out, n_in)`) and `b`; `decoder_bias` holds `c` (shape
    `(n_in,)`). `feedback` is a `TiedLinear` made from them, so `W` is one parameter that
    both the decoder's reconstruction loss and the encoder's DTP loss move (see
    `dtp_eqx.autoencoder_losses`).

    Args:
        in_features, out_features, activation, feedback_activation, init, key: as for
            `DTPLayer` (the key draws `W` only; both biases start at zero).

    Example:
        >>> layer = dtp_eqx.TiedDTPLayer(784, 1000, activation="sigmoid", key=jax.random.key(0))
        >>> layer.feedback.weight.shape            # W^T
        (784, 1000)
        >>> layer.inverse(layer(jax.numpy.ones(784))).shape
        (784,)
    """

    forward: eqx.nn.Linear
    decoder_bias: Float[Array, " n_in"]
    activation: str = eqx.field(static=True)
    feedback_activation: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str = "sigmoid",
        feedback_activation: str | None = None,
        init: str = "glorot",
        key: PRNGKeyArray,
    ):
        self.activation, self.feedback_activation = check_activations(
            activation, feedback_activation)
        self.forward = init_linear(in_features, out_features, init=init, key=key)
        self.decoder_bias = jnp.zeros((in_features,), self.forward.weight.dtype)

    @property
    def feedback(self) -> TiedLinear:
        """The decoder's affine map `h -> W^T h + c`."""
        return TiedLinear(jnp.swapaxes(self.forward.weight, -1, -2), self.decoder_bias)
