"""The training loop: epochs, evaluation, ensembles of seeds, checkpoints and resuming."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from ._train import (
    Keys,
    TrainConfig,
    _is_autoencoder,
    _samples,
    as_key,
    check_arrays,
    check_hyper,
    ensemble_size,
    evaluate,
    init_opt_state,
    train_epoch,
)

HISTORY_KEYS = (
    "train_loss", "train_error", "valid_loss", "valid_error", "test_loss", "test_error",
    "recon_error", "recon_loss", "seconds",
)
_MAGIC = b"DTPEQXCK"


def save_checkpoint(path, tree, meta: dict) -> Path:
    """Write `tree` (e.g. `(model, opt_state)`) and a JSON-able `meta` to one file, atomically.

    The file holds a header, the JSON metadata and the leaves serialised by
    `eqx.tree_serialise_leaves`; it is written to a temporary file and renamed, so an
    interrupted save leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, tree)
    header = json.dumps(meta).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + len(header).to_bytes(8, "little") + header + leaves.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path, like):
    """Read a checkpoint written by `save_checkpoint`; `like` gives the tree's structure.

    Returns:
        `(tree, meta)`.

    Raises:
        ValueError: when the file is not a dtp_eqx checkpoint.
    """
    raw = Path(path).read_bytes()
    meta, size = _read_meta(raw, path)
    tree = eqx.tree_deserialise_leaves(io.BytesIO(raw[16 + size :]), like)
    return tree, meta


def checkpoint_meta(path) -> dict:
    """The JSON metadata of a checkpoint written by `save_checkpoint`, without its arrays.

    Raises:
        ValueError: when the file is not a dtp_eqx checkpoint.
    """
    with open(path, "rb") as f:
        head = f.read(16)
        size = int.from_bytes(head[8:16], "little") if head.startswith(_MAGIC) else 0
        return _read_meta(head + f.read(size), path)[0]


def _read_meta(raw: bytes, path) -> tuple[dict, int]:
    if not raw.startswith(_MAGIC):
        raise ValueError(f"{path} is not a dtp_eqx checkpoint.")
    size = int.from_bytes(raw[8:16], "little")
    return json.loads(raw[16 : 16 + size]), size


def _config_dict(config: TrainConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}


def _same_config(saved: dict, config: TrainConfig) -> bool:
    """Whether a checkpoint's config is `config` (apart from `epochs`). A field the
    checkpoint lacks (one added to `TrainConfig` after it was written) matches when
    `config` keeps that field's default, so older checkpoints still resume."""
    current = _config_dict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return set(saved) <= set(current) and all(
        saved[k] == v if k in saved else v == defaults[k] for k, v in current.items()
    )


def _per_member(fn, key, n):
    """`fn(key)` for a key, or vmapped over a batch of keys."""
    return jax.vmap(fn)(key) if n is not None else fn(key)


def _hyper_dict(hyper: dict) -> dict:
    return {name: np.asarray(value).tolist() for name, value in sorted(hyper.items())}


def fit(
    model,
    data,
    config: TrainConfig | None = None,
    *,
    key: Keys,
    progress: bool = True,
    eval_every: int = 1,
    checkpoint=None,
    checkpoint_every: int = 5,
    resume: bool = False,
    callback=None,
    hyper: dict | None = None,
    mesh=None,
    stop_on_divergence: bool = True,
    run_info: dict | None = None,
):
    """Train `model` on `data` for `config.epochs` epochs; return `(model, history)`.

    A thin loop: each epoch runs the phases of `config.phases()` through `train_epoch`,
    then evaluates. Validation and test sets are used only for reporting. The keys of
    epoch `e` are `jax.random.fold_in(key, e)`, so a resumed run draws exactly what the
    uninterrupted run would have drawn.

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
        stop_on_divergence: raise `FloatingPointError` when the training loss becomes
            non-finite; with False, diverged members of an ensemble keep NaN metrics
            while the others train on (a sweep) (keyword-only).
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
        ValueError: for inputs of the wrong size, labels out of range, non-finite inputs,
            or a checkpoint from another run.
        FloatingPointError: when the training loss becomes NaN or infinite; the last
            checkpoint (from a finite epoch) is kept.

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
    if not (isinstance(eval_every, int) and eval_every >= 1):
        raise ValueError(f"eval_every={eval_every!r} must be a positive integer.")
    if not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive integer.")
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
    phases = ("autoencoder",) if _is_autoencoder(model) else config.phases()
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
    if resume and checkpoint is not None and Path(checkpoint).exists():
        (model, opt_state), meta = load_checkpoint(checkpoint, (model, opt_state))
        if (
            not _same_config(meta["config"], config)
            or meta["n_models"] != n_models
            or meta.get("hyper", {}) != _hyper_dict(hyper)
        ):
            raise ValueError(
                f"checkpoint {checkpoint} comes from another run (config "
                f"{meta['config']}, {meta['n_models']} models); delete it or change the path."
            )
        start_epoch = meta["epoch"]
        wall_before = meta.get("wall_seconds", 0.0)
        history = {k: list(v) for k, v in meta["history"].items()}

    def save(epoch):
        meta = {
            "epoch": epoch,
            "n_models": n_models,
            "config": _config_dict(config),
            "hyper": _hyper_dict(hyper),
            "history": {k: np.asarray(v).tolist() for k, v in history.items()},
            # wall time since the run first started, over every resume
            "wall_seconds": wall_before + time.perf_counter() - wall_start,
        }
        if run_info is not None:
            meta["run_info"] = run_info
        save_checkpoint(checkpoint, (model, opt_state), meta)

    desc = "autoencoder" if _is_autoencoder(model) else config.method
    bar = trange(
        start_epoch, config.epochs, desc=f"{desc} training", disable=not progress,
        initial=start_epoch, total=config.epochs,
    )
    for epoch in bar:
        epoch_key = _per_member(lambda k: jax.random.fold_in(k, epoch), key, n_models)
        keys = _per_member(lambda k: jax.random.split(k, 1 + len(phases)), epoch_key, n_models)
        start = time.perf_counter()
        metrics = {}
        for i, phase in enumerate(phases):
            model, opt_state, phase_metrics = train_epoch(
                model, opt_state, x, y, key=keys[..., 1 + i], config=config, phase=phase,
                sigma=base_sigma * config.anneal(epoch), hyper=hyper, mesh=mesh,
            )
            metrics.update(phase_metrics)
        jax.block_until_ready((model, metrics))
        seconds = time.perf_counter() - start
        # metrics have shape (n_batches,) or (n_models, n_batches)
        train_loss = np.asarray(jnp.mean(metrics["loss"], axis=-1))
        if stop_on_divergence and not np.isfinite(train_loss).all():
            which = "" if n_models is None else (
                f" (models {np.flatnonzero(~np.isfinite(train_loss)).tolist()})"
            )
            kept = f"; the checkpoint {checkpoint} keeps the last saved epoch" if checkpoint else ""
            raise FloatingPointError(
                f"training diverged in epoch {epoch + 1}{which}: the training loss is "
                f"{train_loss}. Lower the learning rates or top_step{kept}."
            )
        history["seconds"].append(seconds)
        history["train_loss"].append(train_loss)
        history["train_error"].append(
            np.asarray(jnp.mean(metrics["error"], axis=-1))
            if "error" in metrics
            else np.full(member_shape, np.nan)
        )
        last = epoch + 1 == config.epochs
        eval_keys = _per_member(lambda k: jax.random.split(k, 3), keys[..., 0], n_models)
        for i, name in enumerate(("valid", "test")):
            if name in splits and ((epoch + 1) % eval_every == 0 or last):
                result = evaluate(
                    model, *splits[name], key=eval_keys[..., i], n_samples=config.n_samples
                )
            else:
                result = {"loss": np.full(member_shape, np.nan), "error": np.full(member_shape, np.nan)}
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
        if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or last):
            save(epoch + 1)
        if callback is not None:
            callback(epoch + 1, model, history)
        postfix = {"loss": f"{float(np.mean(train_loss)):.4f}"}
        valid_error = history["valid_error"][-1]
        if np.isfinite(valid_error).all():
            postfix["valid_error"] = f"{float(np.mean(valid_error)):.2%}"
        bar.set_postfix(postfix, refresh=False)
    return model, {k: np.asarray(v, np.float64) for k, v in history.items()}
