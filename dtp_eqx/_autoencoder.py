"""Auto-encoders trained by difference target propagation, and a linear probe of their features.

A `DTPLayer` is an auto-encoder: its forward mapping `f` encodes, its feedback mapping `g`
decodes. The decoder learns to reconstruct the clean input from the code of a corrupted
input; the encoder learns from a DTP target that uses `f` as the approximate inverse of
`g`: `t_h = h + f(x) - f(z)` with `z = g(h)`, so the code moves by the difference between
encoding the data and encoding its reconstruction, and no gradient passes through `g`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import AbstractDTPLayer
from ._losses import check_nonnegative, cross_entropy, sg


def autoencoder_losses(
    layer: AbstractDTPLayer,
    x: Float[Array, " n_in"],
    *,
    sigma: float | Float[Array, ""],
    key: PRNGKeyArray,
    code_noise: float | Float[Array, ""] = 0.0,
) -> dict[str, Float[Array, ""]]:
    """Decoder and encoder losses of a denoising auto-encoder trained by DTP, one example.

    With `x~ = x + e`, `e ~ N(0, sigma^2 I)`, code `h = f(x~)` and reconstruction
    `z = g(h + u)` of the code corrupted by `u ~ N(0, code_noise^2 I)`:

    - `"decoder"`: `||z - x||^2`, gradient only into `g` (`h` held constant);
    - `"encoder"`: `||f(x~) - h_hat||^2` with the target `h_hat = h + f(x) - f(z)` held
      constant, gradient only into `f`: `f` serves as the approximate inverse of `g`.

    For a `TiedDTPLayer` both losses reach the shared `W` (the decoder's through `W^T`);
    training sums them (see `dtp_eqx.fit`).

    Args:
        layer: the auto-encoder (`layer(x)` encodes, `layer.inverse(h)` decodes).
        x: one clean input, shape `(n_in,)`.
        sigma: standard deviation of the input corruption (keyword-only).
        key: key for the corruptions (keyword-only).
        code_noise: standard deviation of the noise added to the code before decoding;
            0 (default) decodes the code as it is (keyword-only).

    Returns:
        A dict of two scalars, each summed over units, under the keys `"decoder"`
        and `"encoder"`.
    """
    check_nonnegative("sigma", sigma)
    check_nonnegative("code_noise", code_noise)
    input_key, code_key = jax.random.split(key)
    x_noisy = x + sigma * jax.random.normal(input_key, x.shape, x.dtype)
    h = layer(x_noisy)
    code = sg(h) + code_noise * jax.random.normal(code_key, h.shape, h.dtype)
    z = layer.inverse(code)
    h_hat = sg(h + layer(x) - layer(z))
    return {
        "decoder": jnp.sum((z - x) ** 2),
        "encoder": jnp.sum((h - h_hat) ** 2),
    }


@eqx.filter_jit
def reconstruction_error(
    layer: AbstractDTPLayer, x: Float[Array, "n n_in"]
) -> Float[Array, ""]:
    """Mean clean reconstruction error `||g(f(x)) - x||^2` over a batch `(n, n_in)`."""
    z = jax.vmap(lambda xi: layer.inverse(layer(xi)))(x)
    return jnp.mean(jnp.sum((z - x) ** 2, axis=-1))


@eqx.filter_jit
def _probe_epoch(linear, opt_state, features, y, key, batch_size, learning_rate):
    opt = optax.adam(learning_rate)
    n_batches = features.shape[0] // batch_size
    idx = jax.random.permutation(key, features.shape[0])[: n_batches * batch_size]
    fb = features[idx].reshape(n_batches, batch_size, -1)
    yb = y[idx].reshape(n_batches, batch_size)
    params, static = eqx.partition(linear, eqx.is_array)

    def step(carry, batch):
        params, opt_state = carry

        def loss(p):
            logits = jax.vmap(eqx.combine(p, static))(batch[0])
            return jnp.mean(jax.vmap(cross_entropy)(logits, batch[1]))

        value, grads = jax.value_and_grad(loss)(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes dtypes
            updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (fb, yb))
    return eqx.combine(params, static), opt_state, losses


def linear_probe(
    encoder,
    data,
    *,
    key: PRNGKeyArray,
    epochs: int = 10,
    learning_rate: float = 1e-3,
    batch_size: int = 100,
    select: bool = False,
) -> dict:
    """Train a linear softmax classifier on frozen features `encoder(x)`; report its errors.

    Args:
        encoder: maps one input `(n_in,)` to features `(n_features,)`, e.g. a trained
            auto-encoder `DTPLayer`, or `lambda x: x` for raw pixels.
        data: a `dtp_eqx.Dataset`.
        key: initialisation and shuffling key (keyword-only).
        epochs, learning_rate, batch_size: Adam on the batch-mean cross-entropy
            (keyword-only).
        select: keep the classifier of the epoch with the lowest validation error
            (early stopping on the validation set; needs a validation split) instead of
            the last one: with many epochs, a probe trained to convergence that does
            not overfit the training set (keyword-only).

    Returns:
        A dict with the trained `"classifier"` (an `eqx.nn.Linear`), `"train_loss"` and
        `"valid_curve"` (validation error after each epoch; both shape `(epochs,)`),
        `"epoch"` (the epoch kept, counted from 1), and the floats `"valid_error"` and
        `"test_error"` (NaN for a missing split).

    Example:
        >>> result = dtp_eqx.linear_probe(autoencoder, data, key=jax.random.key(0))
        >>> result["test_error"]
    """
    if not (isinstance(epochs, int) and epochs > 0):
        raise ValueError(f"epochs={epochs!r} must be a positive integer.")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be positive.")
    has_valid = data.x_valid is not None and len(data.x_valid) > 0
    if select and not has_valid:
        raise ValueError("select=True keeps the best validation epoch: data needs a validation split.")
    encode = eqx.filter_jit(lambda e, x: jax.vmap(e)(x))
    features = encode(encoder, jnp.asarray(data.x_train))
    y = jnp.asarray(data.y_train)
    splits = {
        name: (encode(encoder, jnp.asarray(xs)), jnp.asarray(ys))
        for name, xs, ys in (("valid", data.x_valid, data.y_valid),
                             ("test", data.x_test, data.y_test))
        if xs is not None and len(xs)
    }
    init_key, key = jax.random.split(key)
    linear = eqx.nn.Linear(features.shape[-1], data.n_classes, key=init_key)
    opt_state = optax.adam(learning_rate).init(eqx.filter(linear, eqx.is_array))
    train_loss, valid_curve = [], []
    kept, kept_epoch, kept_error = linear, epochs, np.inf
    for epoch, epoch_key in enumerate(jax.random.split(key, epochs), start=1):
        linear, opt_state, losses = _probe_epoch(
            linear, opt_state, features, y, epoch_key, batch_size, learning_rate
        )
        train_loss.append(float(jnp.mean(losses)))
        error = _probe_error(linear, *splits["valid"]) if has_valid else float("nan")
        valid_curve.append(error)
        if select and error < kept_error:
            kept, kept_epoch, kept_error = linear, epoch, error
    if not select:
        kept = linear
    result = {"classifier": kept, "train_loss": np.asarray(train_loss),
              "valid_curve": np.asarray(valid_curve), "epoch": kept_epoch}
    for name in ("valid", "test"):
        result[f"{name}_error"] = (
            _probe_error(kept, *splits[name]) if name in splits else float("nan")
        )
    return result


@eqx.filter_jit
def _probe_logits(linear, features):
    return jax.vmap(linear)(features)


def _probe_error(linear, features, y) -> float:
    return float(jnp.mean(jnp.argmax(_probe_logits(linear, features), -1) != y))


def encoder_network(encoder: AbstractDTPLayer, n_classes: int, *, key: PRNGKeyArray):
    """A classifier `n_in - n_hidden - n_classes` whose hidden layer starts as `encoder`'s `f`.

    The supervised network that fine-tunes a trained auto-encoder: a `DTPNetwork` with
    one hidden layer, `h = s(W x + b)` copied from `encoder.forward` (the same
    activation), and a new output layer initialised Glorot-uniform. Train it with
    `dtp_eqx.fit` by back-prop (`method="bp"`) or by DTP (`method="dtp"`: with one hidden
    layer, DTP's top-step target `t = h - top_step * dL/dh` is the only target).

    Args:
        encoder: a trained `DTPLayer` or `TiedDTPLayer` mapping `(n_in,)` to `(n_hidden,)`.
        n_classes: number of output classes.
        key: initialises the output layer (keyword-only).

    Returns:
        A `DTPNetwork` with `sizes == (n_in, n_hidden, n_classes)`.

    Example:
        >>> net = dtp_eqx.encoder_network(autoencoder, 10, key=jax.random.key(0))
        >>> net.sizes
        (784, 1000, 10)
    """
    from ._network import DTPNetwork

    if not isinstance(encoder, AbstractDTPLayer):
        raise TypeError(
            f"encoder is a {type(encoder).__name__}; expected a DTPLayer or TiedDTPLayer."
        )
    net = DTPNetwork(
        (encoder.in_features, encoder.out_features, n_classes),
        activation=encoder.activation, init="glorot", key=key,
    )
    return eqx.tree_at(lambda n: n.layers[0].forward, net, encoder.forward)


def plot_filters(
    weight: Float[Array, "n_filters n_in"] | np.ndarray,
    image_shape: tuple[int, ...],
    *,
    n: int = 100,
    ax=None,
):
    """Show the first `n` rows of `weight` (e.g. `layer.forward.weight`) as an image grid.

    Each filter is scaled to its own range, so the grid shows shapes, not magnitudes.

    Args:
        weight: shape `(n_filters, n_in)` with `n_in = prod(image_shape)`.
        image_shape: `(height, width)` or `(height, width, channels)`.
        n: how many filters to show (keyword-only).
        ax: a matplotlib axes to draw on; a new figure when None (keyword-only).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.shape[1] != int(np.prod(image_shape)):
        raise ValueError(
            f"weight has shape {weight.shape}; expected (n_filters, {int(np.prod(image_shape))}) "
            f"for image_shape={image_shape}."
        )
    w = weight[:n]
    lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
    w = (w - lo) / np.where(hi > lo, hi - lo, 1.0)
    cols = int(np.ceil(np.sqrt(len(w))))
    rows = int(np.ceil(len(w) / cols))
    h, wd = image_shape[:2]
    channels = image_shape[2:] or ()
    grid = np.ones((rows * (h + 1) + 1, cols * (wd + 1) + 1, *channels), np.float32)
    for k, filt in enumerate(w):
        r, c = divmod(k, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (wd + 1) : 1 + c * (wd + 1) + wd] = (
            filt.reshape(image_shape)
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 6 * rows / cols))
    else:
        fig = ax.figure
    ax.imshow(grid, cmap="gray" if not channels else None, interpolation="nearest")
    ax.set_axis_off()
    return fig
