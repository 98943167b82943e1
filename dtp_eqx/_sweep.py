"""Hyperparameter sweeps compiled once: every trial is a member of one vmapped ensemble."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np

from ._config import HYPERPARAMETERS, TrainConfig
from ._models import as_key


def default_ranges(config: TrainConfig) -> dict[str, tuple[float, float]]:
    """Search ranges around `config`: a decade either side of its top step and learning
    rates, and noise `sigma` in `[0.05, 1]`."""
    ranges = {name: (getattr(config, name) / 10, getattr(config, name) * 10)
              for name in ("top_step", "lr_forward", "lr_feedback")}
    ranges["sigma"] = (0.05, 1.0)
    return ranges


def sample_hyperparameters(
    n_trials: int, ranges: dict[str, tuple[float, float]], *, key
) -> dict[str, np.ndarray]:
    """Draw `n_trials` settings, each named setting log-uniform in its `(low, high)` range.

    Args:
        n_trials: how many settings, `>= 1`.
        ranges: `{name: (low, high)}` with names from `HYPERPARAMETERS` and
            `0 < low <= high`.
        key: a `jax.random` key (keyword-only).

    Returns:
        A dict from each name in `ranges` to a float32 array of shape `(n_trials,)`.
    """
    if not (isinstance(n_trials, int) and not isinstance(n_trials, bool) and n_trials >= 1):
        raise ValueError(f"n_trials={n_trials!r} must be a positive integer.")
    unknown = sorted(set(ranges) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(
            f"ranges has unknown names {unknown}; expected some of {list(HYPERPARAMETERS)}."
        )
    keys = jax.random.split(as_key(key), len(HYPERPARAMETERS))
    samples = {}
    for name, k in zip(HYPERPARAMETERS, keys):  # one key per name: adding one keeps the rest
        if name not in ranges:
            continue
        low, high = ranges[name]
        if not (0 < low <= high and np.isfinite(high)):
            raise ValueError(
                f"ranges[{name!r}]=({low!r}, {high!r}) must satisfy 0 < low <= high < inf "
                "(sampled log-uniformly)."
            )
        u = np.asarray(jax.random.uniform(k, (n_trials,)), np.float64)
        samples[name] = np.exp(np.log(low) + u * (np.log(high) - np.log(low))).astype(np.float32)
    return samples


def best_trial(train_loss, valid_error) -> int:
    """Index of the lowest validation error among trials whose training loss is finite.

    Args:
        train_loss: last-epoch training losses, shape `(n_trials,)`.
        valid_error: last-epoch validation errors, shape `(n_trials,)`.

    Raises:
        ValueError: when every trial diverged.
    """
    train_loss, valid_error = np.asarray(train_loss), np.asarray(valid_error, np.float64)
    ok = np.isfinite(train_loss) & np.isfinite(valid_error)
    if not ok.any():
        raise ValueError("every trial diverged (non-finite loss); narrow the ranges.")
    return int(np.argmin(np.where(ok, valid_error, np.inf)))


def random_search(
    make_model,
    data,
    config: TrainConfig,
    *,
    n_trials: int,
    key,
    ranges: dict[str, tuple[float, float]] | None = None,
    progress: bool = True,
    eval_every: int = 1,
) -> dict:
    """Random search over the top step, learning rates and noise, all trials in one program.

    Every trial is one member of an ensemble (`make_model` vmapped over keys) with its
    own settings, trained together by `fit(..., hyper=...)`: one compilation whatever
    `n_trials` is. Trials that diverge keep NaN losses and never win. The best trial is
    the one with the lowest validation error at the last epoch (the paper chose its
    settings by random search on the validation set).

    Args:
        make_model: `make_model(key)` returns a fresh `DTPNetwork`.
        data: a `dtp_eqx.Dataset` with a validation split.
        config: the `TrainConfig` every trial shares apart from the swept settings.
        n_trials: how many settings to try (keyword-only).
        key: a `jax.random` key for the settings, the initial weights and training
            (keyword-only).
        ranges: `{name: (low, high)}` sampled log-uniformly; defaults to
            `default_ranges(config)` (keyword-only).
        progress: show a progress bar (keyword-only).
        eval_every: evaluate every this many epochs and after the last (keyword-only).

    Returns:
        A dict with `"hyper"` (arrays of shape `(n_trials,)` by name), `"valid_error"` and
        `"test_error"` (`(n_trials,)`, last epoch), `"history"` (as from `fit`, with a
        trial axis after the epoch axis), `"best"` (the best trial's index),
        `"best_hyper"` (`{name: float}`) and `"model"` (the trained ensemble).
    """
    from ._fit import fit

    if data.x_valid is None or not len(data.x_valid):
        raise ValueError("random_search picks by validation error: data needs a validation split.")
    ranges = default_ranges(config) if ranges is None else ranges
    hyper_key, init_key, train_key = jax.random.split(as_key(key), 3)
    hyper = sample_hyperparameters(n_trials, ranges, key=hyper_key)
    models = eqx.filter_vmap(make_model)(jax.random.split(init_key, n_trials))
    models, history = fit(
        models, data, config, key=jax.random.split(train_key, n_trials), hyper=hyper,
        progress=progress, eval_every=eval_every, stop_on_divergence=False,
    )
    valid = np.asarray(history["valid_error"][-1], np.float64)
    best = best_trial(history["train_loss"][-1], valid)
    return {
        "hyper": hyper,
        "valid_error": valid,
        "test_error": np.asarray(history["test_error"][-1], np.float64),
        "history": history,
        "best": best,
        "best_hyper": {name: float(values[best]) for name, values in hyper.items()},
        "model": models,
    }
