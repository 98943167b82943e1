"""Convolutional DTP layers (`ConvDTPLayer`), the parameter-free layers that reshape flat
images into channels-first arrays and back (`ImageLayer`, `FlattenLayer`), and a small
CNN for CIFAR-10 built from them (`conv_network`).

Every layer maps one unbatched example, as the dense layers do: an image is an array of
shape `(channels, height, width)` (channels first, as `equinox.nn.Conv2d` reads it).
The losses, targets and feedback rules only call `layer(h)` and `layer.inverse(h)` and
sum over all axes of an activation, so these layers train by DTP or back-prop through
the same `dtp_eqx.fit` as the dense ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._config import check_positive_int
from ._layers import (
    ACTIVATIONS,
    INITS,
    AbstractDTPLayer,
    DTPLayer,
    check_activations,
    check_choice,
)
from ._network import DTPNetwork

POOLS = ("max", "avg", None)
"""Pooling of a `ConvDTPLayer`: 2x2 max-pooling, 2x2 average pooling, or none."""


def _check_shape(name: str, shape, ndim: int | None = None) -> tuple[int, ...]:
    """`shape` as a tuple of positive Python ints, or a `ValueError` naming `name`."""
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"{name}={shape!r} must be a tuple of positive integers.") from None
    if not shape or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ) or (ndim is not None and len(shape) != ndim):
        what = f"{ndim} positive integers" if ndim is not None else "positive integers"
        raise ValueError(f"{name}={shape!r} must be a tuple of {what}.")
    return shape


def _check_example(h: Array, shape: tuple[int, ...], what: str) -> None:
    """Raise a `ValueError` unless one example `h` has shape `shape` (checked at trace
    time: shapes are static)."""
    if h.shape != shape:
        raise ValueError(
            f"{what} has shape {h.shape}, expected one example of shape {shape}; "
            "batch with jax.vmap."
        )


def init_kernel(shape: tuple[int, ...], *, init: str, key: PRNGKeyArray) -> Array:
    """A convolution kernel of `shape` `(n_rows, n_cols, *kernel_size)` drawn as `init_linear`
    draws a dense weight of shape `(n_rows, n_cols * prod(kernel_size))`: random
    (semi-)orthogonal rows or columns, or Glorot uniform with fan-in
    `n_cols * prod(kernel_size)` and fan-out `n_rows * prod(kernel_size)`."""
    check_choice("init", init, INITS)
    if init == "orthogonal":
        matrix = jax.nn.initializers.orthogonal()(key, (shape[0], math.prod(shape[1:])))
        return jnp.reshape(matrix, shape)
    return jax.nn.initializers.glorot_uniform(in_axis=1, out_axis=0)(key, shape)


def _init_conv(cls, in_channels, out_channels, kernel_size, padding, init, key):
    """An `eqx.nn.Conv2d` or `eqx.nn.ConvTranspose2d` with `init_kernel` weights and zero
    bias (shape `(out_channels, 1, 1)`)."""
    make_key, weight_key = jax.random.split(key)
    conv = cls(in_channels, out_channels, kernel_size, padding=padding, key=make_key)
    weight = init_kernel(conv.weight.shape, init=init, key=weight_key)
    bias = jnp.zeros((out_channels, 1, 1), weight.dtype)
    return eqx.tree_at(lambda c: (c.weight, c.bias), conv, (weight, bias))


def _lax_conv(x: Float[Array, "c h w"], weight: Float[Array, "o c k k"]) -> Float[Array, "o h w"]:
    p = weight.shape[-1] // 2
    return jax.lax.conv_general_dilated(x[None], weight, (1, 1), ((p, p), (p, p)))[0]


def _shifted(x: Float[Array, "c h w"], k: int) -> Float[Array, "c kk h w"]:
    """The `k * k` shifted copies of the zero-padded `x` that a `k x k` kernel reads."""
    p = k // 2
    height, width = x.shape[1:]
    padded = jnp.pad(x, ((0, 0), (p, p), (p, p)))
    return jnp.stack([padded[:, i:i + height, j:j + width]
                      for i in range(k) for j in range(k)], axis=1)


@jax.custom_jvp
def conv_same(x: Float[Array, "c h w"], weight: Float[Array, "o c k k"]) -> Float[Array, "o h w"]:
    """The stride-1, "same"-padded convolution of one example `x`, shape `(C, H, W)`, with
    `weight`, shape `(O, C, k, k)` (odd `k`), without bias: shape `(O, H, W)`.

    The values are `lax.conv_general_dilated`'s, which `equinox.nn.Conv2d` computes, and
    so are the derivatives; only the weight's derivative is computed differently: as
    a contraction of the `k * k` shifted inputs, whose transpose (the weight gradient)
    XLA:CPU runs 2-4x faster than its own backward-filter convolution (measured on 2
    cores for a batch of 128 32x32 images, 32 -> 64 channels)."""
    return _lax_conv(x, weight)


@conv_same.defjvp
def _conv_same_jvp(primals, tangents):
    x, weight = primals
    dx, dweight = tangents
    out, k = _lax_conv(x, weight), weight.shape[-1]
    o, c = weight.shape[:2]
    dout = _lax_conv(dx, weight) + jnp.einsum(
        "cshw,ocs->ohw", _shifted(x, k), jnp.reshape(dweight, (o, c, k * k))
    )
    return out, dout


def _apply(conv, x):
    """`conv(x)` for one example, an `eqx.nn.Conv2d` or a stride-1 `ConvTranspose2d`
    (the same convolution with the kernel as stored, see `ConvDTPLayer`), by `conv_same`."""
    return conv_same(x, conv.weight) + conv.bias


def _pool(h: Float[Array, "c h w"], pool: str | None) -> Float[Array, "c h2 w2"]:
    if pool is None:
        return h
    c, height, width = h.shape
    blocks = jnp.reshape(h, (c, height // 2, 2, width // 2, 2))
    return jnp.max(blocks, axis=(2, 4)) if pool == "max" else jnp.mean(blocks, axis=(2, 4))


def _unpool(h: Float[Array, "c h2 w2"], pool: str | None) -> Float[Array, "c h w"]:
    """Nearest-neighbour upsampling by 2 (each value copied into its 2x2 block)."""
    if pool is None:
        return h
    return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)


class ConvDTPLayer(AbstractDTPLayer):
    """A convolutional layer `f(h) = pool(s(conv(h)))` with feedback
    `g(h) = s_g(conv_transpose(unpool(h)))`.

    `forward` is an `equinox.nn.Conv2d` from `C_in` to `C_out` channels with a
    `k x k` kernel, stride 1 and "same" zero padding (`k // 2` on each side), so the
    convolution keeps the height and width; `pool` then halves them by 2x2 max or average
    pooling, or leaves them. `feedback` is an `equinox.nn.ConvTranspose2d` from `C_out`
    back to `C_in` channels with the same kernel size and padding, applied after
    nearest-neighbour upsampling by 2 when the layer pools: `g` maps the layer's output
    shape exactly back to its input shape. With the feedback kernel set to the forward
    kernel flipped and with its channel axes swapped (`adjoint_feedback`), the transposed
    convolution is the exact adjoint (transpose) of the convolution.

    `layer(h_prev)` and `layer.inverse(h)` give the values of `layer.forward(h_prev)`
    and `layer.feedback(unpool(h))` (before the activations), computed by
    `dtp_eqx._conv.conv_same`, whose weight gradients are faster on CPU.

    Shapes, for one example: `h_prev` is `(C_in, H, W)`; `h = f(h_prev)` is
    `(C_out, H, W)` without pooling and `(C_out, H / 2, W / 2)` with it.

    Args:
        in_shape: shape `(C_in, H, W)` of one input (`H` and `W` even when pooling).
        out_channels: number `C_out` of output channels.
        kernel_size: odd kernel size `k` (keyword-only; default 3).
        pool: one of `dtp_eqx.POOLS`: `"max"` (default), `"avg"` or None (keyword-only).
        activation: name of `s`, one of `dtp_eqx.ACTIVATIONS` (keyword-only).
        feedback_activation: name of `s_g`; defaults to `activation` (keyword-only).
        init: `"orthogonal"` or `"glorot"` kernels (see `init_kernel`); biases start
            at zero (keyword-only).
        key: a `jax.random` key, split once between the two mappings (keyword-only).

    Raises:
        ValueError: for an `in_shape` that is not three positive integers, an even
            `kernel_size`, odd `H` or `W` with pooling, or an unknown `pool`,
            `activation`, `feedback_activation` or `init`.

    Example:
        >>> import jax, dtp_eqx
        >>> layer = dtp_eqx.ConvDTPLayer((3, 8, 8), 4, pool="max", key=jax.random.key(0))
        >>> h = layer(jax.numpy.ones((3, 8, 8)))
        >>> h.shape, layer.out_shape
        ((4, 4, 4), (4, 4, 4))
        >>> layer.inverse(h).shape              # back in the input space
        (3, 8, 8)
    """

    forward: eqx.nn.Conv2d
    feedback: eqx.nn.ConvTranspose2d
    image_size: tuple[int, int] = eqx.field(static=True)
    pool: str | None = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    feedback_activation: str = eqx.field(static=True)

    def __init__(
        self,
        in_shape: Sequence[int],
        out_channels: int,
        *,
        kernel_size: int = 3,
        pool: str | None = "max",
        activation: str = "tanh",
        feedback_activation: str | None = None,
        init: str = "orthogonal",
        key: PRNGKeyArray,
    ):
        in_channels, height, width = _check_shape("in_shape", in_shape, 3)
        out_channels = check_positive_int("out_channels", out_channels)
        kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size={kernel_size} must be odd, so that 'same' padding of "
                f"{kernel_size // 2} on each side keeps the height and width."
            )
        if pool not in POOLS:
            raise ValueError(
                f"pool={pool!r} is not supported; expected one of {list(POOLS)}."
            )
        if pool is not None and (height % 2 or width % 2):
            raise ValueError(
                f"pool={pool!r} halves the height and width, which must then be even; "
                f"in_shape={tuple(in_shape)!r} has height {height} and width {width}."
            )
        check_choice("init", init, INITS)
        self.activation, self.feedback_activation = check_activations(
            activation, feedback_activation
        )
        forward_key, feedback_key = jax.random.split(key)
        padding = kernel_size // 2
        self.forward = _init_conv(
            eqx.nn.Conv2d, in_channels, out_channels, kernel_size, padding, init, forward_key
        )
        self.feedback = _init_conv(
            eqx.nn.ConvTranspose2d, out_channels, in_channels, kernel_size, padding, init,
            feedback_key,
        )
        self.image_size = (height, width)
        self.pool = pool

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """`(C_in, H, W)`."""
        return (self.forward.in_channels, *self.image_size)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """`(C_out, H, W)`, or `(C_out, H / 2, W / 2)` with pooling."""
        height, width = self.image_size
        if self.pool is not None:
            height, width = height // 2, width // 2
        return (self.forward.out_channels, height, width)

    def __call__(
        self, h_prev: Float[Array, "c_in h w"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "c_out h_out w_out"]:
        """`f(h_prev) = pool(s(conv(h_prev)))` for one example; `key` is unused."""
        del key
        _check_example(h_prev, self.in_shape, "h_prev")
        return _pool(ACTIVATIONS[self.activation](_apply(self.forward, h_prev)), self.pool)

    def inverse(self, h: Float[Array, "c_out h_out w_out"]) -> Float[Array, "c_in h w"]:
        """`g(h) = s_g(conv_transpose(unpool(h)))` for one example, shape `in_shape`."""
        _check_example(h, self.out_shape, "h")
        return ACTIVATIONS[self.feedback_activation](
            _apply(self.feedback, _unpool(h, self.pool))
        )

    def adjoint_feedback(self) -> ConvDTPLayer:
        """This layer with the feedback kernel set to the exact adjoint of the forward
        convolution (its kernel flipped in space, channel axes swapped) and a zero
        feedback bias: then `conv_transpose` is the transpose of the linear map `conv`."""
        weight = jnp.swapaxes(jnp.flip(self.forward.weight, axis=(2, 3)), 0, 1)
        return eqx.tree_at(
            lambda l: (l.feedback.weight, l.feedback.bias),
            self,
            (weight, jnp.zeros_like(self.feedback.bias)),
        )


class Rearrange(eqx.Module):
    """A parameter-free map of one example: reshape to `split_shape`, transpose the axes
    by `axes`, reshape to `out_shape`. The `forward` and `feedback` of the shape layers."""

    in_shape: tuple[int, ...] = eqx.field(static=True)
    split_shape: tuple[int, ...] = eqx.field(static=True)
    axes: tuple[int, ...] = eqx.field(static=True)
    out_shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, x: Float[Array, " ..."]) -> Float[Array, " ..."]:
        _check_example(x, self.in_shape, "the input")
        return jnp.reshape(jnp.transpose(jnp.reshape(x, self.split_shape), self.axes),
                           self.out_shape)


class AbstractShapeLayer(AbstractDTPLayer):
    """A parameter-free layer that only rearranges an example's values: `f` is `forward`,
    a `Rearrange`, and `g` is `feedback`, its exact inverse. It has no arrays, so
    `dtp_eqx.param_labels` gives it no labels and no optimizer touches it; in DTP a
    target passes through it unchanged in value, `t_{i-1} = g(t_i)` up to rounding."""

    forward: eqx.AbstractVar[Rearrange]
    feedback: eqx.AbstractVar[Rearrange]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.forward.in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.forward.out_shape

    def __call__(
        self, h_prev: Float[Array, " ..."], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " ..."]:
        """`f(h_prev)`, the rearranged example, shape `out_shape`; `key` is unused."""
        del key
        return self.forward(h_prev)

    def inverse(self, h: Float[Array, " ..."]) -> Float[Array, " ..."]:
        """`g(h) = f^{-1}(h)`, exactly, shape `in_shape`."""
        return self.feedback(h)


class ImageLayer(AbstractShapeLayer):
    """Flat channels-last images to channels-first arrays: `(H * W * C,)` to `(C, H, W)`.

    The library's loaders give each image as a flat vector of its pixels in
    height-width-channel order (CIFAR-10: `(3072,)` from `(32, 32, 3)`); convolutions
    read `(C, H, W)`. Put this layer first in a convolutional `DTPNetwork`, which then
    trains on the flat data as a dense one does. The inverse flattens back exactly.

    Args:
        image_shape: `(H, W, C)` of one image, e.g. `dtp_eqx.Dataset.image_shape`;
            `(H, W)` means one channel (MNIST's `(28, 28)`).

    Example:
        >>> layer = dtp_eqx.ImageLayer((32, 32, 3))
        >>> layer.in_shape, layer.out_shape
        ((3072,), (3, 32, 32))
        >>> x = jax.numpy.arange(3072.0)
        >>> bool((layer.inverse(layer(x)) == x).all())
        True
    """

    forward: Rearrange
    feedback: Rearrange

    def __init__(self, image_shape: Sequence[int]):
        shape = _check_shape("image_shape", image_shape)
        if len(shape) == 2:
            shape = shape + (1,)
        if len(shape) != 3:
            raise ValueError(
                f"image_shape={tuple(image_shape)!r} must be (height, width, channels) or "
                "(height, width)."
            )
        height, width, channels = shape
        flat, image = (math.prod(shape),), (channels, height, width)
        self.forward = Rearrange(flat, shape, (2, 0, 1), image)
        self.feedback = Rearrange(image, image, (1, 2, 0), flat)


class FlattenLayer(AbstractShapeLayer):
    """Any example shape to a vector, `in_shape` to `(prod(in_shape),)`, e.g. the
    `(C, H, W)` output of the last `ConvDTPLayer` to the vector a `DTPLayer` or the
    output layer reads. The inverse reshapes back exactly.

    Args:
        in_shape: shape of one input, e.g. `(64, 8, 8)`.

    Example:
        >>> dtp_eqx.FlattenLayer((64, 8, 8)).out_shape
        (4096,)
    """

    forward: Rearrange
    feedback: Rearrange

    def __init__(self, in_shape: Sequence[int]):
        shape = _check_shape("in_shape", in_shape)
        axes = tuple(range(len(shape)))
        flat = (math.prod(shape),)
        self.forward = Rearrange(shape, shape, axes, flat)
        self.feedback = Rearrange(flat, flat, (0,), shape)


def conv_network(
    image_shape: Sequence[int] = (32, 32, 3),
    n_classes: int = 10,
    *,
    channels: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    pool: str | None = "max",
    hidden: Sequence[int] = (),
    activation: str = "tanh",
    feedback_activation: str | None = None,
    init: str = "orthogonal",
    key: PRNGKeyArray,
) -> DTPNetwork:
    """A small CNN trainable by DTP or back-prop on flat images (CIFAR-10 by default).

    The layers are `ImageLayer(image_shape)`, one `ConvDTPLayer` per entry of
    `channels` (each pooling by `pool`, so with two max-pooled layers CIFAR-10's
    `32 x 32` becomes `8 x 8`), a `FlattenLayer`, one dense `DTPLayer` per entry of
    `hidden`, and a linear output layer of `n_classes` logits
    (`DTPNetwork.from_layers`). Its input is the flat vector the loaders give,
    shape `(H * W * C,)`. With the defaults:
    `3072 -> (3, 32, 32) -> conv 3->32, pool -> (32, 16, 16) -> conv 32->64, pool ->
    (64, 8, 8) -> 4096 -> 10`.

    Args:
        image_shape: `(H, W, C)` (or `(H, W)`) of one image, e.g. `data.image_shape`.
        n_classes: number of classes.
        channels: output channels of each convolutional layer (keyword-only).
        kernel_size: odd kernel size of every convolution (keyword-only).
        pool: pooling of every convolutional layer, one of `dtp_eqx.POOLS`
            (keyword-only).
        hidden: widths of dense hidden layers after the flattening (keyword-only).
        activation, feedback_activation, init: as for `ConvDTPLayer` and `DTPLayer`
            (keyword-only).
        key: a `jax.random` key, split once into one key per layer (keyword-only).

    Returns:
        A `DTPNetwork` whose `layers` are the image, convolutional, flatten and dense
        layers.

    Example:
        >>> net = dtp_eqx.conv_network(key=jax.random.key(0))
        >>> net.shapes
        ((3072,), (3, 32, 32), (32, 16, 16), (64, 8, 8), (4096,), (10,))
        >>> data = dtp_eqx.load_cifar10()
        >>> net, history = dtp_eqx.fit(net, data, dtp_eqx.TrainConfig(epochs=1),
        ...                            key=jax.random.key(1))
    """
    channels, hidden = tuple(channels), tuple(hidden)
    keys = jax.random.split(key, len(channels) + len(hidden) + 1)
    layers: list[AbstractDTPLayer] = [ImageLayer(image_shape)]
    for c, k in zip(channels, keys):
        layers.append(ConvDTPLayer(
            layers[-1].out_shape, c, kernel_size=kernel_size, pool=pool,
            activation=activation, feedback_activation=feedback_activation, init=init,
            key=k,
        ))
    layers.append(FlattenLayer(layers[-1].out_shape))
    for n, k in zip(hidden, keys[len(channels):]):
        layers.append(DTPLayer(
            layers[-1].out_features, n, activation=activation,
            feedback_activation=feedback_activation, init=init, key=k,
        ))
    return DTPNetwork.from_layers(layers, n_classes, init=init, key=keys[-1])
