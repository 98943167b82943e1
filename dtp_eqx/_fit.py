"""The training loop `fit`: epochs of phases, evaluation, ensembles of seeds, divergence
checks, and checkpoints (written and verified by `dtp_eqx._checkpoint`) for resuming."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._checkpoint import (
    _check_resumable,
    _config_dict,
    _hyper_dict,
    checkpoint_meta,
    load_checkpoint,
    save_checkpoint,
)
from ._checks import check_arrays
from ._config import IntLike, Keys, TrainConfig, check_positive_int
from ._epoch import check_hyper, train_epoch
from ._evaluate import evaluate
from ._models import _is_autoencoder, _samples, as_key, ensemble_size
from ._params import init_opt_state

HISTORY_KEYS = (
    "train_loss", "train_error", "valid_loss", "valid_error", "test_loss", "test_error",
    "recon_error", "recon_loss", "seconds",
)
DIVERGENCE_FACTOR = 10.0
"""A training loss above this many times its value before training counts as a blow-up."""
DIVERGENCE_EPOCHS = 2
"""Consecutive blown-up epochs (or the last epoch) after which `fit` stops a run."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`: `epoch` epochs are complete and, when `checkpoint` is not
    None, saved there (resume with `resume=True`, or `--resume`)."""

    def __init__(self, epoch: int, checkpoint):
        super().__init__(f"interrupted after epoch {epoch}")
        self.epoch, self.checkpoint = epoch, checkpoint


def _per_member(fn, key, n):
    """`fn(key)` for a key, or vmapped over a batch of keys."""
    return jax.vmap(fn)(key) if n is not None else fn(key)


def fit(
    model,
    data,
    config: TrainConfig | None = None,
    *,
    key: Keys,
    progress: bool = True,
    eval_every: IntLike = 1,
    checkpoint=None,
    checkpoint_every: IntLike = 5,
    resume: bool = False,
    callback=None,
    hyper: dict | None = None,
    mesh=None,
    stop_on_divergence: bool = True,
    run_info: dict | None = None,
):
    """Train `model` on `data` for `config.epochs` epochs; return `(model, history)`.

    A thin loop: each epoch runs the passes of `config.phases(epoch)` through
    `train_epoch`, then evaluates. Validation and test sets are used only for
    reporting. The keys of epoch `e` are `jax.random.fold_in(key, e)`, so a resumed run
    draws exactly what the uninterrupted run would have drawn.

    A single layer (a `DTPLayer`) is trained as a denoising auto-encoder by DTP: every
    minibatch updates the decoder `g` on reconstruction, then the encoder `f` towards its
    DTP target (see `dtp_eqx.autoencoder_losses`; `config.sigma` is the input corruption,
    `lr_feedback` the decoder's and `lr_forward` the encoder's learning rate). Its
    losses are reconstruction errors and its errors NaN; labels are ignored.

    Several seeds train in one compiled program: pass an ensemble built with
    `eqx.filter_vmap` (e.g. `eqx.filter_vmap(make_net)(jax.random.split(k, n))`) and
    `n` keys (`jax.random.split(key, n)`); every history entry then gains an axis of
    length `n` after the epoch axis.

    Args:
        model: a `DTPNetwork`, a `DTPLayer` to train as an auto-encoder, or an ensemble.
        data: a `dtp_eqx.Dataset` (train split `(n, n_in)`, labels `(n,)`, optional
            validation and test splits).
        config: a `TrainConfig`; defaults to the original deep tanh DTP settings.
        key: a `jax.random` key for shuffling, noise and samples, or `(n_models,)`
            keys for an ensemble (keyword-only).
        progress: show a tqdm progress bar with the latest metrics (keyword-only).
        eval_every: evaluate validation and test splits every this many epochs and
            after the last (other rows hold NaN) (keyword-only).
        checkpoint: a file to save `(model, opt_state)` and the history to, atomically,
            every `checkpoint_every` epochs and at the end; None saves nothing
            (keyword-only).
        resume: continue from `checkpoint` when it exists (the model, config apart from
            `epochs`, and keys must be those of the interrupted run) (keyword-only).
        callback: called as `callback(epoch, model, history)` after each epoch, with
            `epoch` counted from 1 (keyword-only).
        hyper: per-member settings of an ensemble, `{name: array of shape (n_models,)}`
            for names in `HYPERPARAMETERS` (`top_step`, `lr_forward`, `lr_feedback`,
            `sigma`), overriding `config`: a hyperparameter sweep compiled once (see
            `dtp_eqx.random_search`). Scalars apply to every member (keyword-only).
        mesh: a one-axis mesh from `dtp_eqx.data_mesh()` to split every minibatch across its devices
            (data parallel, same results as one device up to float rounding) (keyword-only).
        stop_on_divergence: raise `FloatingPointError` when training diverges: an epoch's
            training loss is not finite, or is more than `DIVERGENCE_FACTOR` (10) times
            the loss of the model before training (measured on up to 1,000 training
            examples) for `DIVERGENCE_EPOCHS` (2) epochs in a row or in the last epoch.
            An epoch above that bound is never checkpointed, so the last good checkpoint
            stays. With False, diverged members of an ensemble keep their (NaN or huge)
            metrics while the others train on (a sweep) (keyword-only).
        run_info: a JSON-able dict stored in every checkpoint as `"run_info"` (read it
            back with `dtp_eqx.checkpoint_meta`), e.g. how the run was started
            (keyword-only).

    Returns:
        The trained model and a history dict of NumPy arrays with one row per epoch, with keys
        `train_loss`, `train_error` (running means over the epoch's forward pass),
        `valid_loss`, `valid_error`, `test_loss`, `test_error` (NaN without that split),
        `recon_error` (shape `(epochs, M - 2)`: clean reconstruction error of layers
        2 .. M-1 on the validation set, or the training set without one), `recon_loss`
        (same shape: the noisy inverse loss averaged over the epoch's inverse updates,
        NaN for back-prop) and `seconds` (training time of the epoch, evaluation
        excluded; the first epoch includes compilation).

    Raises:
        ValueError: for inputs of the wrong size, labels out of range, non-finite inputs.
        CheckpointError: (a ValueError) on `resume`, a checkpoint that is damaged (its
            checksum or shapes do not match) or comes from another run (other settings,
            number of seeds or network, or more epochs done than `config.epochs`); the
            message names the file and what to change.
        FloatingPointError: when training diverges (see `stop_on_divergence`); the
            message names the checkpoint that keeps the last good epoch, if there is one.
        RunInterrupted: (a KeyboardInterrupt) on Ctrl-C; the last complete epoch is
            saved to `checkpoint` first (when one is given), so `resume=True` continues.

    Example:
        >>> net = dtp_eqx.DTPNetwork((784, 240, 240, 10), key=jax.random.key(0))
        >>> data = dtp_eqx.load_mnist()
        >>> net, history = dtp_eqx.fit(net, data, dtp_eqx.TrainConfig(epochs=2),
        ...                            key=jax.random.key(1))
        >>> history["test_error"][-1]
    """
    from tqdm.auto import trange

    from ._diagnostics import reconstruction_errors

    config = TrainConfig() if config is None else config
    eval_every = check_positive_int("eval_every", eval_every)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    n_models = ensemble_size(model)
    key = as_key(key)
    if key.shape != (() if n_models is None else (n_models,)):
        raise ValueError(
            f"key has shape {key.shape}; expected one key for a single model, or "
            f"{n_models} keys (jax.random.split(key, {n_models})) for this ensemble."
            if n_models is not None
            else f"key has shape {key.shape}; expected a single key for a single model."
        )
    x, y = check_arrays(model, data.x_train, data.y_train, "train")
    if x.shape[0] < config.batch_size:
        raise ValueError(
            f"the training set has {x.shape[0]} examples, fewer than "
            f"batch_size={config.batch_size}."
        )
    splits = {
        name: check_arrays(model, xs, ys, name)
        for name, xs, ys in (
            ("valid", data.x_valid, data.y_valid),
            ("test", data.x_test, data.y_test),
        )
        if xs is not None and len(xs)
    }
    recon_x = splits["valid"][0] if "valid" in splits else x
    n_inverses = 1 if _is_autoencoder(model) else len(model.layers) - 1
    member_shape = () if n_models is None else (n_models,)
    hyper = {
        name: np.asarray(value, np.float32)
        for name, value in check_hyper(hyper).items()
    }
    for name, value in hyper.items():
        if value.shape not in ((), member_shape):
            raise ValueError(
                f"hyper[{name!r}] has shape {value.shape}; expected a scalar or "
                f"{member_shape} (one value per member)."
            )
    base_sigma = jnp.asarray(hyper["sigma"]) if "sigma" in hyper else config.sigma
    opt_state = init_opt_state(model, config)
    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    start_epoch, wall_before, wall_start = 0, 0.0, time.perf_counter()
    reference = None  # the loss before training, against which a blow-up is judged
    if resume and checkpoint is not None and Path(checkpoint).exists():
        _check_resumable(checkpoint, config, n_models, hyper)
        (model, opt_state), meta = load_checkpoint(checkpoint, (model, opt_state))
        start_epoch = meta["epoch"]
        reference = meta.get("reference_loss")
        wall_before = meta.get("wall_seconds", 0.0)
        history = {k: list(v) for k, v in meta["history"].items()}

    if reference is None:
        reference = (np.asarray(history["train_loss"][0]) if history["train_loss"] else
                     _reference_loss(model, x, y, config, key, n_models))
    reference = np.asarray(reference, np.float64)
    saved = {"epoch": start_epoch if start_epoch else None}

    def save(epoch):
        meta = {
            "epoch": epoch,
            "n_models": n_models,
            "config": _config_dict(config),
            "hyper": _hyper_dict(hyper),
            "history": {k: np.asarray(v[:epoch]).tolist() for k, v in history.items()},
            "reference_loss": reference.tolist(),
            # wall time since the run first started, over every resume
            "wall_seconds": wall_before + time.perf_counter() - wall_start,
        }
        if run_info is not None:
            meta["run_info"] = run_info
        save_checkpoint(checkpoint, (model, opt_state), meta)
        saved["epoch"] = epoch

    def kept() -> str:
        """What the message says about the checkpoint: only one that exists is named."""
        if checkpoint is None or not Path(checkpoint).exists():
            return "; no checkpoint was saved"
        try:
            epoch = saved["epoch"] or checkpoint_meta(checkpoint)["epoch"]
        except (OSError, ValueError):
            return f"; {checkpoint} is left as it was"
        return f"; the checkpoint {checkpoint} keeps the last saved epoch ({epoch})"

    desc = "autoencoder" if _is_autoencoder(model) else config.method
    bar = trange(
        start_epoch, config.epochs, desc=f"{desc} training", disable=not progress,
        initial=start_epoch, total=config.epochs,
    )
    above = 0  # consecutive epochs with a training loss far above the reference
    done = start_epoch  # epochs whose model, history and optimizer state are complete
    try:
        for epoch in bar:
            epoch_key = _per_member(lambda k: jax.random.fold_in(k, epoch), key, n_models)
            phases = ("autoencoder",) if _is_autoencoder(model) else config.phases(epoch)
            keys = _per_member(lambda k: jax.random.split(k, 1 + len(phases)), epoch_key,
                               n_models)
            start = time.perf_counter()
            metrics = {}
            new_model, new_opt_state = model, opt_state
            for i, phase in enumerate(phases):
                new_model, new_opt_state, phase_metrics = train_epoch(
                    new_model, new_opt_state, x, y, key=keys[..., 1 + i], config=config,
                    phase=phase, sigma=base_sigma * config.anneal(epoch), hyper=hyper,
                    mesh=mesh,
                )
                metrics.update(phase_metrics)
            jax.block_until_ready((new_model, metrics))
            seconds = time.perf_counter() - start
            # metrics have shape (n_batches,) or (n_models, n_batches)
            train_loss = np.asarray(jnp.mean(metrics["loss"], axis=-1))
            last = epoch + 1 == config.epochs
            finite = np.isfinite(train_loss)
            blown = ~finite | (train_loss > DIVERGENCE_FACTOR * reference)
            above = above + 1 if blown.any() else 0
            if stop_on_divergence and (
                not finite.all() or above >= DIVERGENCE_EPOCHS or (above and last)
            ):
                which = "" if n_models is None else (
                    f" (models {np.flatnonzero(blown).tolist()})"
                )
                why = ("is not finite" if not finite.all() else
                       f"is more than {DIVERGENCE_FACTOR:g} times its value before training "
                       f"({np.round(reference, 4).tolist()}) for {above} epoch(s)")
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1}{which}: the training loss "
                    f"{np.round(train_loss, 4).tolist()} {why}. Lower the learning rates "
                    f"or top_step{kept()}."
                )
            model, opt_state = new_model, new_opt_state
            history["seconds"].append(seconds)
            history["train_loss"].append(train_loss)
            history["train_error"].append(
                np.asarray(jnp.mean(metrics["error"], axis=-1))
                if "error" in metrics
                else np.full(member_shape, np.nan)
            )
            eval_keys = _per_member(lambda k: jax.random.split(k, 3), keys[..., 0], n_models)
            for i, name in enumerate(("valid", "test")):
                if name in splits and ((epoch + 1) % eval_every == 0 or last):
                    result = evaluate(
                        model, *splits[name], key=eval_keys[..., i], n_samples=config.n_samples
                    )
                else:
                    result = {"loss": np.full(member_shape, np.nan),
                              "error": np.full(member_shape, np.nan)}
                history[f"{name}_loss"].append(np.asarray(result["loss"]))
                history[f"{name}_error"].append(np.asarray(result["error"]))
            if _is_autoencoder(model):
                recon = np.asarray(evaluate(model, recon_x, None)["loss"])[..., None]
            else:
                recon_key = eval_keys[..., 2] if _samples(model) else None
                recon = np.asarray(reconstruction_errors(model, recon_x, key=recon_key))
            history["recon_error"].append(recon)
            history["recon_loss"].append(
                np.asarray(jnp.mean(metrics["recon_loss"], axis=-2))
                if "recon_loss" in metrics
                else np.full(member_shape + (n_inverses,), np.nan)
            )
            done = epoch + 1
            # an epoch far above the reference is never saved over the last good one
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or last) \
                    and not blown.any():
                save(epoch + 1)
            if callback is not None:
                callback(epoch + 1, model, history)
            postfix = {"loss": f"{float(np.mean(train_loss)):.4f}"}
            valid_error = history["valid_error"][-1]
            if np.isfinite(valid_error).all():
                postfix["valid_error"] = f"{float(np.mean(valid_error)):.2%}"
            bar.set_postfix(postfix, refresh=False)
    except KeyboardInterrupt:
        bar.close()
        # the model of the last complete epoch is consistent: save it unless it is saved
        if checkpoint is not None and done > (saved["epoch"] or 0) and above == 0:
            save(done)
        raise RunInterrupted(done, checkpoint if saved["epoch"] else None) from None
    return model, {k: np.asarray(v, np.float64) for k, v in history.items()}


def _reference_loss(model, x, y, config, key, n_models):
    """The loss of the untrained model on (up to) 1,000 training examples, per member."""
    n = min(len(x), 1000)
    ref_key = _per_member(lambda k: jax.random.fold_in(k, 2**31 - 1), key, n_models)
    labels = None if _is_autoencoder(model) else y[:n]
    return np.asarray(evaluate(model, x[:n], labels, key=ref_key,
                               n_samples=config.n_samples)["loss"])
