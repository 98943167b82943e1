"""The paper's auto-encoder experiment: search its settings, train it, and judge its features.

The paper reports a test error for its DTP auto-encoder but gives no noise level, training
length or learning rate. `search_autoencoder` chooses them on the validation set (the
score of a trial is the validation error of a linear probe on its features, at several
training lengths); `finetune` turns trained encoders into `784-1000-10` classifiers and
trains them by back-prop or by DTP's top-step target, with the learning rate and the
epoch chosen on the validation set.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._autoencoder import encoder_network, linear_probe
from ._config import TrainConfig
from ._models import as_key, ensemble_member, ensemble_size
from ._network import DTPNetwork
from ._sweep import sample_hyperparameters


def summary(values) -> dict:
    """`{"mean", "std", "per_seed"}` of a sequence of per-seed values."""
    values = np.asarray(values, np.float64)
    return {"mean": float(np.mean(values)), "std": float(np.std(values)),
            "per_seed": values.tolist()}


def search_autoencoder(
    make_model,
    data,
    config: TrainConfig,
    *,
    n_trials: int,
    check_epochs,
    ranges: dict[str, tuple[float, float]],
    key,
    probe_epochs: int = 20,
    progress: bool = True,
) -> dict:
    """Random search for an auto-encoder's settings and training length, on validation.

    All `n_trials` auto-encoders train in one compiled program (`fit(..., hyper=...)`),
    each with its own settings drawn log-uniformly from `ranges`. After each epoch in
    `check_epochs`, every trial's features are scored by the validation error of a linear
    probe (`dtp_eqx.linear_probe`, `probe_epochs` epochs, best validation epoch kept).
    The best (trial, epoch) pair gives the settings and the training length.

    Args:
        make_model: `make_model(key)` returns a fresh auto-encoder layer.
        data: a `dtp_eqx.Dataset` with a validation split.
        config: settings every trial shares; `epochs` is replaced by `max(check_epochs)`.
        n_trials: how many settings to try (keyword-only).
        check_epochs: training lengths to score, e.g. `(5, 10, 20)` (keyword-only).
        ranges: `{name: (low, high)}` over `dtp_eqx.HYPERPARAMETERS`, e.g. `sigma`,
            `code_noise` and `lr_forward` (keyword-only).
        key: draws the settings, the initial weights, training and probes (keyword-only).
        probe_epochs: epochs of each scoring probe (keyword-only).
        progress: show a progress bar (keyword-only).

    Returns:
        A JSON-able dict with `"n_trials"`, `"ranges"`, `"check_epochs"`, `"probe_epochs"`,
        `"hyper"` (`{name: [value per trial]}`), `"probe_valid_error"` (`{epoch: [error
        per trial]}`) and `"best"` (`{"trial", "epochs", "probe_valid_error", name: value}`).
    """
    from ._fit import fit

    if data.x_valid is None or not len(data.x_valid):
        raise ValueError("search_autoencoder scores on validation: data needs a validation split.")
    check_epochs = sorted({int(e) for e in check_epochs})
    if not check_epochs or check_epochs[0] < 1:
        raise ValueError(f"check_epochs={check_epochs!r} must hold positive epoch counts.")
    hyper_key, init_key, train_key, probe_key = jax.random.split(as_key(key), 4)
    hyper = sample_hyperparameters(n_trials, ranges, key=hyper_key)
    models = eqx.filter_vmap(make_model)(jax.random.split(init_key, n_trials))
    scores: dict[int, list[float]] = {}

    def score(epoch, model, history):
        if epoch not in check_epochs:
            return
        scores[epoch] = [
            linear_probe(ensemble_member(model, i), data, epochs=probe_epochs, select=True,
                         key=jax.random.fold_in(probe_key, i))["valid_error"]
            for i in range(n_trials)
        ]

    fit(models, data, dataclasses.replace(config, epochs=check_epochs[-1]),
        key=jax.random.split(train_key, n_trials), hyper=hyper, progress=progress,
        eval_every=check_epochs[-1], stop_on_divergence=False, callback=score)
    table = np.array([scores[e] for e in check_epochs], np.float64)  # (epochs, trials)
    table = np.where(np.isfinite(table), table, np.inf)
    e, t = np.unravel_index(np.argmin(table), table.shape)
    return {
        "n_trials": n_trials,
        "ranges": {name: list(map(float, r)) for name, r in ranges.items()},
        "check_epochs": check_epochs,
        "probe_epochs": probe_epochs,
        "hyper": {name: np.asarray(v).tolist() for name, v in hyper.items()},
        "probe_valid_error": {str(ep): scores[ep] for ep in check_epochs},
        "best": {"trial": int(t), "epochs": int(check_epochs[e]),
                 "probe_valid_error": float(table[e, t]),
                 **{name: float(np.asarray(v)[t]) for name, v in hyper.items()}},
    }


def finetune(
    encoders,
    data,
    config: TrainConfig,
    *,
    grid: dict[str, list[float]],
    key,
    from_scratch: bool = False,
    checkpoint=None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Fine-tune classifiers made from trained encoders; choose settings on validation.

    Every encoder of the ensemble `encoders` (one per seed) becomes a classifier
    `dtp_eqx.encoder_network(encoder, n_classes)`, trained with `config` (by `"bp"` or by
    `"dtp"`) once for every point of `grid`; all seeds x grid points train in one
    compiled program. The grid point and the epoch with the lowest validation error,
    averaged over seeds, are chosen, and each seed's test error there is reported.

    Args:
        encoders: an ensemble of `n_seeds` auto-encoder layers (see `dtp_eqx.ensemble_size`).
        data: a `dtp_eqx.Dataset` with labels and a validation split.
        config: the fine-tuning `TrainConfig` (method, epochs, optimizer, ...).
        grid: `{name: values}` over `dtp_eqx.HYPERPARAMETERS`, all lists of the same
            length (one grid point per index), e.g. `{"lr_forward": [1e-4, 3e-4]}`
            (keyword-only).
        key: initialises the output layers and drives training (keyword-only).
        from_scratch: ignore the encoders' weights: a randomly initialised network of the
            same shape (the control that shows what pre-training is worth) (keyword-only).
        checkpoint, resume, progress: as for `dtp_eqx.fit` (keyword-only).

    Returns:
        A JSON-able dict with `"config"`, `"grid"`, `"chosen"` (the grid point's index
        `"point"`, the `"epoch"` and the point's values), `"valid_error"` and
        `"test_error"` (`{"mean", "std", "per_seed"}` at the chosen point and epoch), and
        `"curves"` (`"valid_error"` and `"test_error"`, the mean over seeds, shape
        `(epochs, n_points)`).
    """
    from ._fit import fit

    n_seeds = ensemble_size(encoders)
    if n_seeds is None:
        raise ValueError("encoders must be an ensemble (one encoder per seed, stacked).")
    lengths = {len(v) for v in grid.values()}
    if len(lengths) != 1:
        raise ValueError(f"grid={grid!r} must hold lists of one common length.")
    (n_points,) = lengths
    init_key, train_key = jax.random.split(as_key(key))
    n = n_seeds * n_points  # member s * n_points + p: seed s, grid point p
    repeated = jax.tree.map(
        lambda a: jnp.repeat(a, n_points, axis=0) if eqx.is_array(a) else a, encoders
    )
    keys = jax.random.split(init_key, n)
    if from_scratch:
        def make(enc, k):
            return DTPNetwork((enc.in_features, enc.out_features, data.n_classes),
                              activation=enc.activation, init="glorot", key=k)
    else:
        def make(enc, k):
            return encoder_network(enc, data.n_classes, key=k)
    nets = eqx.filter_vmap(make)(repeated, keys)
    hyper = {name: np.tile(np.asarray(v, np.float32), n_seeds) for name, v in grid.items()}
    _, history = fit(nets, data, config, key=jax.random.split(train_key, n), hyper=hyper,
                     checkpoint=checkpoint, resume=resume, progress=progress,
                     stop_on_divergence=False)
    epochs = config.epochs
    valid = history["valid_error"].reshape(epochs, n_seeds, n_points)
    test = history["test_error"].reshape(epochs, n_seeds, n_points)
    mean_valid = np.nanmean(valid, axis=1)
    mean_valid = np.where(np.isfinite(mean_valid), mean_valid, np.inf)
    e, p = np.unravel_index(np.argmin(mean_valid), mean_valid.shape)
    return {
        "config": dataclasses.asdict(config),
        "from_scratch": from_scratch,
        "grid": {name: list(map(float, v)) for name, v in grid.items()},
        "chosen": {"point": int(p), "epoch": int(e) + 1,
                   **{name: float(v[p]) for name, v in grid.items()}},
        "valid_error": summary(valid[e, :, p]),
        "test_error": summary(test[e, :, p]),
        "last_epoch_test_error": summary(test[-1, :, p]),
        "curves": {"valid_error": np.nanmean(valid, axis=1).tolist(),
                   "test_error": np.nanmean(test, axis=1).tolist()},
    }
