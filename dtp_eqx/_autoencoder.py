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
) -> dict[str, Float[Array, ""]]:
    """Decoder and encoder losses of a denoising auto-encoder trained by DTP, one example.

    With `x~ = x + e`, `e ~ N(0, sigma^2 I)`, code `h = f(x~)` and reconstruction
    `z = g(h)`:

    - `"decoder"`: `||g(h) - x||^2`, gradient only into `g` (`h` held constant);
    - `"encoder"`: `||f(x~) - t_h||^2` with the target `t_h = h + f(x) - f(z)` held
      constant, gradient only into `f`.

    Args:
        layer: the auto-encoder (`layer(x)` encodes, `layer.inverse(h)` decodes).
        x: one clean input, shape `(n_in,)`.
        sigma: standard deviation of the input corruption (keyword-only).
        key: key for the corruption (keyword-only).

    Returns:
        A dict of two scalars, each summed over units, under the keys `"decoder"`
        and `"encoder"`.
    """
    check_nonnegative("sigma", sigma)
    x_noisy = x + sigma * jax.random.normal(key, x.shape, x.dtype)
    h = layer(x_noisy)
    z = layer.inverse(sg(h))
    t_h = sg(h + layer(x) - layer(z))
    return {
        "decoder": jnp.sum((z - x) ** 2),
        "encoder": jnp.sum((h - t_h) ** 2),
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
) -> dict:
    """Train a linear softmax classifier on frozen features `encoder(x)`; report its errors.

    Args:
        encoder: maps one input `(n_in,)` to features `(n_features,)`, e.g. a trained
            auto-encoder `DTPLayer`.
        data: a `dtp_eqx.Dataset`.
        key: initialisation and shuffling key (keyword-only).
        epochs, learning_rate, batch_size: Adam on the batch-mean cross-entropy
            (keyword-only).

    Returns:
        A dict with the trained `"classifier"` (an `eqx.nn.Linear`), `"train_loss"`
        (shape `(epochs,)`), and the floats `"valid_error"` and `"test_error"` (NaN for
        a missing split).

    Example:
        >>> result = dtp_eqx.linear_probe(autoencoder, data, key=jax.random.key(0))
        >>> result["test_error"]
    """
    if not (isinstance(epochs, int) and epochs > 0):
        raise ValueError(f"epochs={epochs!r} must be a positive integer.")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be positive.")
    encode = eqx.filter_jit(lambda e, x: jax.vmap(e)(x))
    features = encode(encoder, jnp.asarray(data.x_train))
    y = jnp.asarray(data.y_train)
    init_key, key = jax.random.split(key)
    linear = eqx.nn.Linear(features.shape[-1], data.n_classes, key=init_key)
    opt_state = optax.adam(learning_rate).init(eqx.filter(linear, eqx.is_array))
    train_loss = []
    for epoch_key in jax.random.split(key, epochs):
        linear, opt_state, losses = _probe_epoch(
            linear, opt_state, features, y, epoch_key, batch_size, learning_rate
        )
        train_loss.append(float(jnp.mean(losses)))
    result = {"classifier": linear, "train_loss": np.asarray(train_loss)}
    for name, xs, ys in (("valid", data.x_valid, data.y_valid), ("test", data.x_test, data.y_test)):
        if xs is None or not len(xs):
            result[f"{name}_error"] = float("nan")
            continue
        logits = jax.vmap(linear)(encode(encoder, jnp.asarray(xs)))
        result[f"{name}_error"] = float(jnp.mean(jnp.argmax(logits, -1) != jnp.asarray(ys)))
    return result


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
