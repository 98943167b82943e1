"""Evaluation: the loss and error of a model (or an ensemble) on a split (`evaluate`),
averaging over sampled networks for stochastic units, and the class probabilities of
each sampled network (`sample_probabilities`)."""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from ._checks import _called_from_package, check_input_scale, check_labels
from ._config import IntLike, Keys, check_positive_int
from ._models import _is_autoencoder, _samples, as_key, ensemble_size


def _eval_impl(model, x, y, keys):
    if _is_autoencoder(model):
        z = jax.vmap(lambda xi: model.inverse(model(xi)))(x)
        return jnp.sum((z - x) ** 2), jnp.zeros((), x.dtype)
    if keys is None:
        log_probs = jax.nn.log_softmax(jax.vmap(model)(x), axis=-1)
    else:  # average class probabilities over the sampled networks, one scan step each

        def add_sample(total, key):
            sample_keys = jax.random.split(key, x.shape[0])
            logits = jax.vmap(lambda xi, ki: model(xi, key=ki))(x, sample_keys)
            return total + jax.nn.softmax(logits, axis=-1), None

        zeros = jnp.zeros((x.shape[0], model.n_classes), x.dtype)
        total, _ = jax.lax.scan(add_sample, zeros, keys)
        log_probs = jnp.log(jnp.maximum(total / keys.shape[0], jnp.finfo(x.dtype).tiny))
    picked = jnp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]
    return -jnp.sum(picked), jnp.sum(jnp.argmax(log_probs, axis=-1) != y)


_eval_batch = eqx.filter_jit(_eval_impl)
_eval_batch_ensemble = eqx.filter_jit(
    eqx.filter_vmap(_eval_impl, in_axes=(eqx.if_array(0), None, None, eqx.if_array(0)))
)


def evaluate(
    model,
    x: Real[ArrayLike, "n n_in"],
    y: Real[ArrayLike, " n"] | None,
    *,
    key: Keys | None = None,
    n_samples: IntLike = 100,
    batch_size: IntLike = 10_000,
) -> dict[str, float | np.ndarray]:
    """Mean cross-entropy `"loss"` and classification `"error"` (a fraction) on `(x, y)`.

    For an auto-encoder (a `DTPLayer`), `"loss"` is the mean clean reconstruction
    error `||g(f(x)) - x||^2` and `"error"` is NaN. A stochastic network (one with `StochasticBinary` units in training mode) predicts
    with the class probabilities averaged over `n_samples` sampled networks, as in the
    paper; the loss is the cross-entropy of that average.

    Args:
        model: a `DTPNetwork`, or a `DTPLayer` auto-encoder.
        x: float inputs, shape `(n, n_in)` with `n >= 1` (pixels scaled to [0, 1]);
            y: integer labels in `[0, n_classes)`, shape `(n,)` (None for an
            auto-encoder, which ignores them). NumPy or JAX arrays; the annotations
            admit any real dtype so that integer inputs and float labels meet the
            clear `ValueError` below.
        key: key for the samples; required for a stochastic network (keyword-only).
        n_samples: samples averaged by a stochastic network, `>= 1` (keyword-only).
        batch_size: examples per jitted chunk, `>= 1` (keyword-only).

    Returns:
        Floats; for an ensemble (see `dtp_eqx.ensemble_size`), arrays of shape
        `(n_models,)`, with `key` then of shape `(n_models,)`.

    Raises:
        ValueError: for `x` of the wrong shape, empty (`n = 0`) or of an integer dtype
            (such as uint8 pixels: pass `x.astype(np.float32) / 255`); for a classifier,
            labels `y` that are missing, not integers of shape `(n,)`, or outside
            `[0, n_classes)`; for `batch_size` or `n_samples` that are not positive
            integers; for a stochastic network without `key`.
        TypeError: for a `key` that is not a JAX random key (see `as_key`).

    Warns:
        UserWarning: for float inputs that look like 0-255 pixels (minimum `>= 0`,
            maximum `> 2`); see `check_input_scale`.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(x, (np.ndarray, jax.Array)):
        x = np.asarray(x)
    n_in = model.in_features
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"x has shape {x.shape}; the model expects (n, {n_in}).")
    n = x.shape[0]
    if n == 0:
        raise ValueError(
            f"x is empty (shape {x.shape}): evaluate needs at least one example."
        )
    if not _called_from_package():  # fit's check_arrays has warned about its splits
        check_input_scale(x, "x")
    if _is_autoencoder(model):
        y = jnp.zeros(n, jnp.int32)
    elif y is None:
        raise ValueError(
            "y is None, but a classifier needs integer labels of shape "
            f"({n},); y=None is only for an auto-encoder (a DTPLayer)."
        )
    else:
        if not isinstance(y, (np.ndarray, jax.Array)):
            y = np.asarray(y)
        check_labels(y, n, model.n_classes, "labels y")
    ensemble = ensemble_size(model) is not None
    keys = None
    if _samples(model):
        if key is None:
            raise ValueError(
                "evaluating a stochastic network samples it, so it needs key=...; or "
                "evaluate eqx.nn.inference_mode(model) for the mean-field network."
            )
        split = partial(jax.random.split, num=n_samples)
        keys = jax.vmap(split)(as_key(key)) if ensemble else split(as_key(key))
    loss = wrong = 0.0
    for start in range(0, n, batch_size):
        chunk = slice(start, start + batch_size)
        chunk_loss, chunk_wrong = (_eval_batch_ensemble if ensemble else _eval_batch)(
            model, x[chunk], y[chunk], keys
        )
        loss = loss + np.asarray(chunk_loss, np.float64)
        wrong = wrong + np.asarray(chunk_wrong, np.float64)
    if _is_autoencoder(model):
        wrong = np.full_like(loss, np.nan)
    if not ensemble:
        return {"loss": float(loss) / n, "error": float(wrong) / n}
    return {"loss": loss / n, "error": wrong / n}


def sample_probabilities(
    model, x: Float[Array, "n n_in"], *, key: PRNGKeyArray, n_samples: IntLike = 100
) -> Float[Array, "n_samples n n_classes"]:
    """Class probabilities of `n_samples` sampled networks, one row per sample.

    The samples are those `evaluate(model, x, y, key=key, n_samples=n_samples)` draws
    when `x` fits in one evaluation chunk (10,000 examples), so the mean over the first
    axis gives `evaluate`'s averaged prediction, and its first `S` rows show how the
    test error depends on the number of samples averaged.

    Args:
        model: a `DTPNetwork` with stochastic units.
        x: inputs, shape `(n, n_in)`.
        key: key for the samples (keyword-only).
        n_samples: how many sampled networks, `>= 1` (keyword-only).

    Returns:
        Probabilities of shape `(n_samples, n, n_classes)`.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    if not _samples(model):
        raise ValueError(
            "sample_probabilities needs a network whose units sample (units='bernoulli', "
            "not in inference mode); use jax.nn.softmax(jax.vmap(model)(x)) otherwise."
        )
    return _sample_probabilities(model, jnp.asarray(x), jax.random.split(as_key(key), n_samples))


@eqx.filter_jit
def _sample_probabilities(model, x, keys):
    def one_sample(key):
        logits = jax.vmap(lambda xi, ki: model(xi, key=ki))(x, jax.random.split(key, x.shape[0]))
        return jax.nn.softmax(logits, axis=-1)

    return jax.lax.map(one_sample, keys)
