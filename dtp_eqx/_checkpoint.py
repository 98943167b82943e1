"""Checkpoints: one file holding a pytree (e.g. `(model, opt_state)`) and JSON
metadata, written atomically with a checksum (`save_checkpoint`), read back and
verified (`load_checkpoint`, `checkpoint_meta`), and the checks that a checkpoint comes
from the run `fit` is asked to resume."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from ._config import TrainConfig

_MAGIC = b"DTPEQXCK"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: not a checkpoint, truncated, altered, or
    written by a run whose model has other shapes. The message names the file."""


_FORMAT = 2
"""Checkpoint format: 2 adds the SHA-256 of the arrays and their shapes to the metadata."""


def _leaf_shapes(tree) -> list:
    """`[shape, dtype]` of every array in `tree`, as a checkpoint records them."""
    return [[list(leaf.shape), str(leaf.dtype)]
            for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def save_checkpoint(path, tree, meta: dict) -> Path:
    """Write `tree` (e.g. `(model, opt_state)`) and a JSON-able `meta` to one file, atomically.

    The file holds a header, the JSON metadata and the leaves serialised by
    `eqx.tree_serialise_leaves`; the metadata also records the SHA-256 of the
    serialised leaves and every array's shape and dtype, which `load_checkpoint`
    checks. It is written to a temporary file and renamed, so an interrupted save
    leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, tree)
    body = leaves.getvalue()
    meta = {**meta, "format": _FORMAT, "sha256": hashlib.sha256(body).hexdigest(),
            "leaves": _leaf_shapes(tree)}
    header = json.dumps(meta).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + len(header).to_bytes(8, "little") + header + body)
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
        CheckpointError: (a ValueError) when the file is not a dtp_eqx checkpoint, is
            truncated, does not match its checksum, or holds arrays whose shapes are not
            those of `like` (a checkpoint of another run).
    """
    raw = Path(path).read_bytes()
    meta, size = _read_meta(raw, path)
    body = raw[16 + size :]
    if "sha256" in meta:  # format 2; older checkpoints carry no checksum
        if hashlib.sha256(body).hexdigest() != meta["sha256"]:
            raise CheckpointError(
                f"checkpoint {path} is damaged: its contents do not match their checksum "
                f"(truncated or altered; {len(raw)} bytes). Delete it, or start again with "
                "--overwrite."
            )
        expected = _leaf_shapes(like)
        if meta["leaves"] != expected:
            raise CheckpointError(
                f"checkpoint {path} comes from another run: it holds {len(meta['leaves'])} "
                f"arrays, the first of shape {meta['leaves'][:1]}, where this run's model "
                f"has {len(expected)}, the first {expected[:1]} (another network, number "
                "of seeds or optimizer)."
            )
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(body), like)
    except Exception as err:  # equinox raises several kinds for a file that does not fit
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's model ({type(err).__name__}: "
            f"{str(err)[:200]}); it is damaged or comes from another run."
        ) from None
    return tree, meta


def checkpoint_meta(path) -> dict:
    """The JSON metadata of a checkpoint written by `save_checkpoint`, without its arrays.

    Raises:
        CheckpointError: (a ValueError) when the file is not a dtp_eqx checkpoint or
            its header is damaged.
    """
    with open(path, "rb") as f:
        head = f.read(16)
        size = int.from_bytes(head[8:16], "little") if head.startswith(_MAGIC) else 0
        return _read_meta(head + f.read(size), path)[0]


def _read_meta(raw: bytes, path) -> tuple[dict, int]:
    if not raw.startswith(_MAGIC):
        raise CheckpointError(f"{path} is not a dtp_eqx checkpoint ({len(raw)} bytes).")
    size = int.from_bytes(raw[8:16], "little")
    if len(raw) < 16 + size:
        raise CheckpointError(f"checkpoint {path} is truncated: its header is cut off.")
    try:
        meta = json.loads(raw[16 : 16 + size])
    except (UnicodeDecodeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} is damaged: its header is not readable.")
    return meta, size


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


def _hyper_dict(hyper: dict) -> dict:
    return {name: np.asarray(value).tolist() for name, value in sorted(hyper.items())}


def _check_resumable(checkpoint, config: TrainConfig, n_models, hyper: dict) -> None:
    """Raise a `CheckpointError` unless `fit` may resume from `checkpoint`: a checkpoint
    written by `fit` for this number of seeds, with these settings (`config` apart
    from `epochs`, and the per-member `hyper`), and no more epochs done than
    `config.epochs`. Only the metadata is read, before any array."""
    # what the file says about its run, checked before its arrays are read
    meta = checkpoint_meta(checkpoint)
    missing = sorted({"epoch", "n_models", "config"} - set(meta))
    if missing:
        raise CheckpointError(
            f"checkpoint {checkpoint} was not written by fit (its metadata has no "
            f"{', '.join(missing)}); resume from a training checkpoint, or pass "
            "--overwrite."
        )
    if meta["n_models"] != n_models:
        raise CheckpointError(
            f"checkpoint {checkpoint} comes from another run: it holds "
            f"{meta['n_models'] or 1} seed(s), this run trains {n_models or 1} "
            f"(pass --seeds {meta['n_models'] or 1} to resume it)."
        )
    if (not _same_config(meta["config"], config)
            or meta.get("hyper", {}) != _hyper_dict(hyper)):
        changed = sorted(k for k, v in _config_dict(config).items()
                         if k in meta["config"] and meta["config"][k] != v)
        was = ", ".join(f"{k}={meta['config'][k]!r}" for k in changed) or "per-member hyper"
        raise CheckpointError(
            f"checkpoint {checkpoint} comes from another run: it was started with "
            f"{was}; resume with the settings it was started with, or pass --overwrite."
        )
    if meta["epoch"] > config.epochs:
        raise CheckpointError(
            f"checkpoint {checkpoint} has {meta['epoch']} epochs done, more than the "
            f"{config.epochs} asked for: pass --epochs {meta['epoch']} or more to "
            "resume it, or --overwrite to start again."
        )
