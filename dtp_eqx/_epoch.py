"""Epochs: one pass of a phase over the training set compiled as a `lax.scan` over
minibatches (`train_epoch`), for one model, a one-member ensemble or a vmapped ensemble,
optionally split over a data mesh (`data_mesh`); the per-member hyperparameters of an
ensemble (`check_hyper`); and `train_inverses`, which trains only the feedback mappings."""

from __future__ import annotations

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._config import (
    HYPERPARAMETERS,
    PHASES,
    FloatLike,
    IntLike,
    Keys,
    TrainConfig,
    _is_int,
    _is_real,
)
from ._layers import check_choice
from ._models import as_key
from ._params import init_opt_state
from ._step import make_step


def _epoch_impl(model, opt_state, x, y, key, sigma, hyper, config, phase, mesh):
    n_batches = x.shape[0] // config.batch_size
    perm_key, step_key = jax.random.split(key)
    if config.shuffle:
        idx = jax.random.permutation(perm_key, x.shape[0])[: n_batches * config.batch_size]
    else:
        idx = jnp.arange(n_batches * config.batch_size)
    # Minibatches are gathered inside the scan, one at a time: an ensemble then never
    # holds a permuted copy of the whole training set per member.
    idx = idx.reshape(n_batches, config.batch_size)
    params, static = eqx.partition(model, eqx.is_array)

    def body(carry, batch):
        params, opt_state = carry
        batch_idx, batch_key = batch
        xb, yb = x[batch_idx], y[batch_idx]
        if mesh is not None:  # data parallel: each device takes a slice of the minibatch
            split = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
            xb, yb = jax.lax.with_sharding_constraint((xb, yb), split)
        model = eqx.combine(params, static)
        model, opt_state, metrics = make_step(
            model, opt_state, xb, yb,
            key=batch_key, config=config, phase=phase, sigma=sigma, hyper=hyper,
        )
        return (eqx.filter(model, eqx.is_array), opt_state), metrics

    keys = jax.random.split(step_key, n_batches)
    (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), (idx, keys))
    return eqx.combine(params, static), opt_state, metrics


_train_epoch = eqx.filter_jit(_epoch_impl)
# An ensemble (models stacked along a leading axis, one key each) in one program.
_train_epoch_ensemble = eqx.filter_jit(
    eqx.filter_vmap(
        _epoch_impl,
        in_axes=(eqx.if_array(0), eqx.if_array(0), None, None, 0, 0, 0, None, None, None),
    )
)


def _one_member_epoch(model, opt_state, x, y, key, sigma, hyper, config, phase, mesh):
    """`_epoch_impl` of a one-member ensemble, run without its member axis: XLA:CPU runs a
    program vmapped over an axis of length 1 about 1.3-1.6x slower than the same program
    without it (benchmarks/results/xla-cpu-variants.md)."""
    first = partial(jax.tree.map, lambda a: a[0] if eqx.is_array(a) else a)
    out = _epoch_impl(*first((model, opt_state)), x, y, key[0], sigma[0], first(hyper),
                      config, phase, mesh)
    return jax.tree.map(lambda a: a[None] if eqx.is_array(a) else a, out)


_train_epoch_one = eqx.filter_jit(_one_member_epoch)


def train_epoch(
    model,
    opt_state: dict,
    x: Float[Array, "n n_in"],
    y: Int[Array, " n"],
    *,
    key: Keys,
    config: TrainConfig,
    phase: str,
    sigma: FloatLike | Float[Array, " n_models"] | None = None,
    hyper: dict | None = None,
    mesh: jax.sharding.Mesh | None = None,
):
    """One pass of `phase` over `(x, y)`, compiled as a `lax.scan` over minibatches.

    The data are (optionally) permuted, cut to a whole number of `config.batch_size`
    batches, and reshaped to `(n_batches, batch_size, n_in)`. Compiles once per model
    structure, config and phase; `sigma` is traced, so annealing it does not recompile.
    An ensemble (models stacked with `eqx.filter_vmap`, one key each) trains every
    member in the same compiled program, vmapped over the leading axis.

    Args:
        model: a `DTPNetwork` or `DTPLayer` auto-encoder, or an ensemble of them.
        opt_state: from `init_opt_state`.
        x: inputs, shape `(n, n_in)`; y: integer labels, shape `(n,)`.
        key: permutation and noise key, or keys of shape `(n_models,)` for an ensemble
            (keyword-only).
        config: a `TrainConfig` (keyword-only).
        phase: one of `"inverse"`, `"forward"`, `"per-batch"`, `"bp"` (keyword-only).
        sigma: noise standard deviation; defaults to `config.sigma`; for an ensemble,
            one per member, shape `(n_models,)`, is allowed (keyword-only).
        hyper: per-member `{"top_step", "lr_forward", "lr_feedback"}` overriding
            `config`'s values: scalars, or arrays of shape `(n_models,)` for an ensemble
            (a hyperparameter sweep in one program) (keyword-only).
        mesh: a one-axis mesh from `data_mesh`: every minibatch is split across its devices
            (data parallel; `batch_size` must be a multiple of the mesh size) and the
            model, optimizer state and data are replicated (keyword-only).

    Returns:
        `(model, opt_state, metrics)`; each metric has a leading axis of length `n_batches`.
    """
    check_choice("phase", phase, PHASES)
    hyper = check_hyper(hyper)
    sigma = hyper.get("sigma", config.sigma) if sigma is None else sigma
    if isinstance(sigma, (bool, np.bool_)) or (
        _is_real(sigma) and not (sigma >= 0 and math.isfinite(sigma))
    ):
        raise ValueError(f"sigma={sigma!r} must be a finite non-negative number.")
    if x.shape[0] < config.batch_size:
        raise ValueError(
            f"x has {x.shape[0]} examples, fewer than batch_size={config.batch_size}."
        )
    key = as_key(key)
    n_models = key.shape[0] if key.ndim == 1 else None
    sigma = _member_values(sigma, n_models, "sigma")
    hyper = {
        name: _member_values(value, n_models, name)
        for name, value in {**config.hyperparameters(), **(hyper or {})}.items()
        if name != "sigma"
    }
    if mesh is not None:
        model, opt_state, x, y = _replicate((model, opt_state, x, y), mesh, config.batch_size)
    epoch = {None: _train_epoch, 1: _train_epoch_one}.get(n_models, _train_epoch_ensemble)
    return epoch(model, opt_state, x, y, key, sigma, hyper, config, phase, mesh)


def train_inverses(
    net,
    x: Float[Array, "n n_in"],
    *,
    config: TrainConfig,
    updates: IntLike,
    key: PRNGKeyArray,
    progress=None,
):
    """`net` after `updates` minibatch updates of its feedback mappings alone.

    The forward weights stay as they are: this trains the inverses `g_i` of a network
    whose layers are fixed (what target propagation assumes it has), at `config.sigma`,
    `config.lr_feedback` and `config.batch_size`. Whole epochs run as `train_epoch`'s
    compiled scans; a remainder of `updates` runs on the first batches of one more
    (shuffled, if `config.shuffle`) pass.

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(n, n_0)`, at least one batch.
        config: a `TrainConfig` (keyword-only).
        updates: how many minibatch updates, `>= 0` (keyword-only).
        key: noise and shuffling key (keyword-only).
        progress: called with the fraction done (0 to 1] after each pass, or None
            (keyword-only).

    Returns:
        The network with trained feedback mappings.

    Example:
        >>> net = dtp_eqx.train_inverses(net, x_train, config=dtp_eqx.TrainConfig(),
        ...                              updates=500, key=jax.random.key(0))
    """
    if not _is_int(updates) or updates < 0:
        raise ValueError(f"updates={updates!r} must be a non-negative integer.")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress={progress!r} must be a function of the fraction done.")
    key = as_key(key)
    if key.ndim:
        raise ValueError(f"key has shape {key.shape}; train_inverses trains one network.")
    size = config.batch_size
    n_batches = x.shape[0] // size
    if n_batches == 0:
        raise ValueError(f"x has {x.shape[0]} examples, fewer than batch_size={size}.")
    updates = int(updates)
    opt_state = init_opt_state(net, config)
    labels = jnp.zeros(x.shape[0], jnp.int32)  # the inverse phase reads no label
    done, step = 0, 0
    while done < updates:
        step_key = jax.random.fold_in(key, step)
        n = min(n_batches, updates - done)
        xs, ys = x, labels
        if n < n_batches:  # the first n batches of one more pass
            if config.shuffle:
                order = jax.random.permutation(jax.random.fold_in(step_key, 1), x.shape[0])
                xs = x[order]
            xs, ys = xs[: n * size], labels[: n * size]
        net, opt_state, _ = train_epoch(
            net, opt_state, xs, ys, key=step_key, config=config, phase="inverse")
        done, step = done + n, step + 1
        if progress is not None:
            progress(done / updates)
    return net


def check_hyper(hyper) -> dict:
    """Validate a `hyper=` mapping: names from `HYPERPARAMETERS`, finite values."""
    hyper = dict(hyper or {})
    unknown = sorted(set(hyper) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(
            f"hyper has unknown names {unknown}; expected some of {list(HYPERPARAMETERS)}."
        )
    for name, value in hyper.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.number) or not np.isfinite(value).all():
            raise ValueError(f"hyper[{name!r}]={value!r} must hold finite numbers.")
        noise = name in ("sigma", "code_noise")
        if not noise and not (value > 0).all():
            raise ValueError(f"hyper[{name!r}]={value!r} must be positive.")
        if noise and not (value >= 0).all():
            raise ValueError(f"hyper[{name!r}]={value!r} must be non-negative.")
    return hyper


def _member_values(value, n_models, name):
    """A setting as float32: a scalar for one model, shape `(n_models,)` for an ensemble."""
    value = jnp.asarray(value, jnp.float32)
    shape = () if n_models is None else (n_models,)
    if value.ndim == 0:
        return jnp.broadcast_to(value, shape)
    if value.shape != shape:
        raise ValueError(
            f"{name} has shape {value.shape}; expected a scalar or one value per model, "
            f"shape {shape}."
        )
    return value


def data_mesh(devices=None) -> jax.sharding.Mesh:
    """A one-axis mesh named `"data"` over `devices` (default: all of them), for the
    `mesh=` argument of `fit` and `train_epoch`: each minibatch is split across it."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(
        np.asarray(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,)
    )


def _replicate(tree, mesh, batch_size):
    """Place every array of `tree` on all devices of `mesh` (replicated)."""
    if len(mesh.axis_names) != 1 or mesh.axis_types[0] != jax.sharding.AxisType.Auto:
        raise ValueError(
            f"mesh has axes {mesh.axis_names} of types {mesh.axis_types}; expected one "
            "data axis of type Auto, as made by dtp_eqx.data_mesh()."
        )
    if batch_size % mesh.size:
        raise ValueError(
            f"batch_size={batch_size} does not split evenly over the mesh's {mesh.size} "
            "devices; use a multiple of the device count."
        )
    replicated = NamedSharding(mesh, PartitionSpec())
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, replicated), static)
