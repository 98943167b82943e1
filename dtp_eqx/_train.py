"""Optimizers, jitted steps and epochs, evaluation, and the `fit` loop."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, Int, Key, PRNGKeyArray, Real

Keys = PRNGKeyArray | Key[Array, " n_models"]
"""One key, or one key per member of an ensemble."""
IntLike = int | np.integer
"""A Python or NumPy integer (such as `np.int64`); a bool is rejected where a size is due."""
FloatLike = float | np.floating
"""A Python or NumPy float (such as `np.float32`)."""
Scalar = float | np.floating | Float[Array, ""]
"""A Python or NumPy float, or a traced scalar (a hyperparameter vmapped over an ensemble)."""

from ._layers import AbstractDTPLayer, TiedDTPLayer, check_choice
from ._network import continuous, straight_through
from ._autoencoder import autoencoder_losses
from ._losses import (
    cross_entropy,
    layer_loss,
    network_reconstruction_losses,
    output_loss,
    sg,
)
from ._targets import compute_targets

TRAIN_METHODS = ("dtp", "tp", "bp", "ste", "bp-continuous")
"""`"dtp"` and `"tp"` train by targets; the others back-propagate the cross-entropy:
`"bp"` through the network as it is (zero derivative through `sign` and samples),
`"ste"` with the straight-through estimator on discrete and stochastic units, and
`"bp-continuous"` through the continuous relaxation (sign replaced by the identity)
while evaluation keeps the sign: the original code's "train continuous, test with
sign" baseline, which is not a straight-through estimator."""
BACKPROP_METHODS = ("bp", "ste", "bp-continuous")
SCHEDULES = ("alternate-epoch", "per-batch")
"""When inverses train: a whole epoch before each forward epoch, or before every forward step."""
OPTIMIZERS = ("rmsprop", "adam", "sgd")
"""Optimizer names understood by `make_optimizer`."""
HYPERPARAMETERS = ("top_step", "lr_forward", "lr_feedback", "sigma", "code_noise")
"""The `TrainConfig` settings that may differ between members of one compiled ensemble
(`hyper=` of `fit` and `train_epoch`): the rest fix the program's structure."""
PHASES = ("inverse", "forward", "per-batch", "bp", "autoencoder")


def original_rmsprop(learning_rate: Scalar) -> optax.GradientTransformation:
    """The original code's centered RMSprop with momentum, built from optax.

    Running mean `a = 0.95 a + 0.05 g`, running square `s = 0.95 s + 0.05 g^2`,
    step `g / sqrt(s - a^2 + 1e-3)`, velocity `v = 0.9 v - learning_rate * step`,
    update `theta += v`.
    """
    return optax.rmsprop(
        learning_rate,
        decay=0.95,
        eps=1e-3,
        eps_in_sqrt=True,
        centered=True,
        momentum=0.9,
    )


def _is_int(value) -> bool:
    """Whether `value` is an integer scalar (Python or NumPy, e.g. `np.int64`), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value) -> bool:
    """Whether `value` is a real scalar (Python or NumPy, e.g. `np.float32`), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_positive_int(name: str, value) -> int:
    """`value` as a Python int, or a `ValueError` naming `name` unless it is an integer
    `>= 1` (a Python or NumPy integer; a bool is not one)."""
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"{name}={value!r} must be a positive integer.")
    return int(value)


def make_optimizer(name: str, learning_rate: Scalar) -> optax.GradientTransformation:
    """An optax optimizer by name: `"rmsprop"` (`original_rmsprop`), `"adam"` or `"sgd"`.

    Raises:
        ValueError: for an unknown `name` or a `learning_rate` that is not a positive
            finite number (checked when it is a Python or NumPy scalar, not an array).
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if isinstance(learning_rate, (bool, np.bool_)) or (
        _is_real(learning_rate) and not (learning_rate > 0 and math.isfinite(learning_rate))
    ):
        raise ValueError(f"learning_rate={learning_rate!r} must be a positive finite number.")
    if name == "rmsprop":
        return original_rmsprop(learning_rate)
    if name == "adam":
        return optax.adam(learning_rate)
    return optax.sgd(learning_rate)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: method, schedule, step sizes and noise. Defaults are the original code's
    deep tanh settings (paper notes, section 2) with `top_step = eta / batch_size`.

    Attributes:
        method: one of `TRAIN_METHODS`: `"dtp"`, `"tp"`, or the back-prop baselines
            `"bp"`, `"ste"` and `"bp-continuous"`.
        schedule: `"alternate-epoch"` (an epoch of inverse updates, then an epoch of
            forward updates, as the original code) or `"per-batch"` (inverse then forward
            update on every minibatch, as the paper's Algorithm 1, after
            `inverse_warmup` inverse-only passes). Ignored by `"bp"`.
        epochs: number of epochs (an alternate-epoch epoch is one inverse pass plus one
            forward pass over the training set).
        batch_size: minibatch size; the ragged end of each shuffled epoch is dropped.
        top_step: per-example step of the first target (see `dtp_eqx.compute_targets`).
        sigma: standard deviation of the inverse loss's corruption noise.
        lr_forward: learning rate of the forward (and output) parameters.
        lr_feedback: learning rate of the feedback parameters.
        optimizer: `"rmsprop"` (the original centered RMSprop with momentum), `"adam"` or `"sgd"`.
        shuffle: reshuffle the training set every epoch (the original code did not).
        sigma_tau: when set, anneal the noise as `sigma / (1 + epoch / sigma_tau)`,
            as the original discrete and stochastic runs.
        anneal_from: the number the first epoch has in that anneal: 0 (default), or 1
            as the original discrete code (`disc_dtp.py`), which counts epochs from 1.
        input_noise: standard deviation of Gaussian noise added to the inputs in
            training (0.3 for the paper's stochastic network).
        code_noise: for an auto-encoder, standard deviation of the Gaussian noise added
            to the code before it is decoded (see `dtp_eqx.autoencoder_losses`).
        n_samples: for stochastic networks, how many samples of the network are averaged
            (as class probabilities) at test time; the paper uses 100.
        inverse_warmup: for the per-batch schedule, how many passes over the training
            set train only the inverses at the start of the first epoch, before any
            forward update (default 1, like the alternate-epoch schedule's first pass).
            Without it the first forward updates chase targets made by untrained
            inverses, and with the paper's deep tanh settings the network saturates at
            chance (`benchmarks/results/per-batch-schedule.md`). Ignored by the
            alternate-epoch schedule and by back-prop.

    Sizes and rates may be Python or NumPy numbers (`np.int64(100)`, `np.float32(1e-3)`);
    NumPy ones are stored as Python numbers.

    Raises:
        ValueError: for an unknown `method`, `schedule` or `optimizer`; `epochs`,
            `batch_size` or `n_samples` that are not positive integers (a bool is not
            one); `lr_forward`, `lr_feedback` or `top_step` that are not positive finite
            numbers; `sigma`, `input_noise` or `code_noise` that are not finite
            non-negative numbers (NaN and infinity are rejected); a `sigma_tau` that is
            neither None nor a positive finite number; an `anneal_from` or
            `inverse_warmup` that is not a non-negative integer.
    """

    method: str = "dtp"
    schedule: str = "alternate-epoch"
    epochs: IntLike = 100
    batch_size: IntLike = 100
    top_step: FloatLike = 0.327736 / 100
    sigma: FloatLike = 0.359830
    lr_forward: FloatLike = 0.0148893
    lr_feedback: FloatLike = 0.00501149
    optimizer: str = "rmsprop"
    shuffle: bool = True
    sigma_tau: FloatLike | None = None
    anneal_from: IntLike = 0
    input_noise: FloatLike = 0.0
    code_noise: FloatLike = 0.0
    n_samples: IntLike = 100
    inverse_warmup: IntLike = 1

    def __post_init__(self):
        check_choice("method", self.method, TRAIN_METHODS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        # NumPy scalars (np.int64 sizes, np.float32 rates) are accepted and stored as
        # Python numbers, so that a config compares, hashes and serialises as usual.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (np.integer, np.floating)):
                object.__setattr__(self, field.name, value.item())
        if not (_is_int(self.anneal_from) and self.anneal_from >= 0):
            raise ValueError(
                f"anneal_from={self.anneal_from!r} must be a non-negative integer (the "
                "number of the first epoch in the noise anneal: 0 or 1)."
            )
        if not (_is_int(self.inverse_warmup) and self.inverse_warmup >= 0):
            raise ValueError(
                f"inverse_warmup={self.inverse_warmup!r} must be a non-negative integer "
                "(inverse-only passes before the first per-batch epoch)."
            )
        for name in ("epochs", "batch_size", "n_samples"):
            check_positive_int(name, getattr(self, name))
        for name in ("lr_forward", "lr_feedback", "top_step"):
            value = getattr(self, name)
            if not (_is_real(value) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value!r} must be a positive finite number.")
        for name in ("sigma", "input_noise", "code_noise"):
            value = getattr(self, name)
            if not (_is_real(value) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value!r} must be a finite non-negative number.")
        if self.sigma_tau is not None and not (
            _is_real(self.sigma_tau) and self.sigma_tau > 0 and math.isfinite(self.sigma_tau)
        ):
            raise ValueError(
                f"sigma_tau={self.sigma_tau!r} must be a positive finite number of epochs "
                "(or None for a constant sigma)."
            )

    def anneal(self, epoch: int) -> float:
        """The factor `sigma` is multiplied by in epoch `epoch` (counted from 0 by `fit`;
        `anneal_from` is added before annealing)."""
        if self.sigma_tau is None:
            return 1.0
        return 1 / (1 + (epoch + self.anneal_from) / self.sigma_tau)

    def sigma_at(self, epoch: int) -> float:
        """The noise standard deviation in epoch `epoch` (counted from 0)."""
        return self.sigma * self.anneal(epoch)

    def hyperparameters(self) -> dict[str, float]:
        """The float settings a sweep may vary per model, `{name: value}` for
        `HYPERPARAMETERS`."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    def phases(self, epoch: int | None = None) -> tuple[str, ...]:
        """The passes over the training set that make up epoch `epoch` (counted from
        0), in order; `None` for any epoch after the first. Only the per-batch schedule's
        first epoch differs: it starts with `inverse_warmup` inverse-only passes."""
        if self.method in BACKPROP_METHODS:
            return ("bp",)
        if self.schedule == "alternate-epoch":
            return ("inverse", "forward")
        return ("inverse",) * (self.inverse_warmup if epoch == 0 else 0) + ("per-batch",)


def param_labels(model) -> object:
    """Label each parameter array of a `DTPNetwork` `"forward"`, `"feedback"` or `"frozen"`.

    Forward weights of the hidden and output layers are `"forward"`; the feedback
    mappings of hidden layers `2 .. M-1` are `"feedback"`; layer 1's feedback, which no
    target uses, is `"frozen"`. For a single layer (an auto-encoder), `forward` is
    `"forward"` and `feedback` is `"feedback"`; a `TiedDTPLayer`, whose decoder shares
    the encoder's weights, is `"forward"` throughout. Returns a pytree of strings shaped
    like `model`.
    """
    labels = jax.tree.map(lambda _: "forward", model)
    if isinstance(model, TiedDTPLayer):
        return labels
    if isinstance(model, AbstractDTPLayer):
        return eqx.tree_at(
            lambda m: m.feedback, labels, jax.tree.map(lambda _: "feedback", model.feedback)
        )
    for k, layer in enumerate(model.layers):
        label = "feedback" if k > 0 else "frozen"
        labels = eqx.tree_at(
            lambda m: m.layers[k].feedback,
            labels,
            jax.tree.map(lambda _: label, layer.feedback),
        )
    return labels


def _spec(model, label: str):
    return jax.tree.map(
        lambda l, x: l == label and eqx.is_array(x), param_labels(model), model
    )


def init_opt_state(model, config: TrainConfig) -> dict:
    """Optimizer states `{"forward": ..., "feedback": ...}` for the two parameter groups
    (stacked, one per member, for an ensemble)."""
    if ensemble_size(model) is not None:
        return eqx.filter_vmap(lambda m: init_opt_state(m, config))(model)
    return {
        "forward": make_optimizer(config.optimizer, config.lr_forward).init(
            eqx.filter(model, _spec(model, "forward"))
        ),
        "feedback": make_optimizer(config.optimizer, config.lr_feedback).init(
            eqx.filter(model, _spec(model, "feedback"))
        ),
    }


def _batch_mean(fn, *batched):
    return jnp.mean(jax.vmap(fn)(*batched))


def training_activations(net, xb, *, input_noise: float, key):
    """Activations of a batch `(batch, n_0)` in training: noisy inputs, sampled units."""
    noise_key, sample_key = jax.random.split(key)
    if input_noise:
        xb = xb + input_noise * jax.random.normal(noise_key, xb.shape, xb.dtype)
    keys = jax.random.split(sample_key, xb.shape[0])
    return jax.vmap(lambda x, k: net.activations(x, key=k))(xb, keys)


def forward_loss(net, xb, yb, *, config: TrainConfig, key, top_step: Scalar | None = None):
    """Batch loss whose gradient is the forward update of `config.method`, and metrics.

    For DTP/TP: the sum of the layer-local losses (batch means) and the output layer's
    cross-entropy; for the back-prop methods: the cross-entropy. `xb` has shape
    `(batch, n_0)`, `yb` `(batch,)`; `key` draws input noise and stochastic units;
    `top_step` overrides `config.top_step` (it may be traced).
    """
    top_step = config.top_step if top_step is None else top_step
    if config.method == "ste":
        net = straight_through(net)
    elif config.method == "bp-continuous":
        net = continuous(net)
    hs = training_activations(net, xb, input_noise=config.input_noise, key=key)
    ce = jax.vmap(cross_entropy)(hs[-1], yb)
    metrics = {
        "loss": jnp.mean(ce),
        "error": jnp.mean(jnp.argmax(hs[-1], axis=-1) != yb),
    }
    if config.method in BACKPROP_METHODS:
        return jnp.mean(ce), metrics
    hs = sg(hs)
    ts = jax.vmap(
        lambda h, y: compute_targets(
            net, h, y, top_step=top_step, method=config.method
        )
    )(hs, yb)
    total = _batch_mean(lambda h, y: output_loss(net.output, h, y), hs[-2], yb)
    for layer, h_prev, t in zip(net.layers, hs[:-2], ts):
        total = total + _batch_mean(partial(layer_loss, layer), h_prev, t)
    return total, metrics


def inverse_loss(net, xb, *, sigma, key, input_noise: float = 0.0):
    """Summed batch-mean reconstruction losses of the feedback mappings of layers 2 .. M-1.

    Layer `i`'s feedback learns to reconstruct the (corrupted) input `h_{i-1}` that
    layer `i` received in a training forward pass of the batch `xb`, shape `(batch, n_0)`;
    in a stochastic network, the probability `p_{i-1}` read through a fresh sample (see
    `dtp_eqx.network_reconstruction_losses`). Returns the total and the per-layer
    losses, shape `(M - 2,)`.
    """
    forward_key, key = jax.random.split(key)
    hs = sg(training_activations(net, xb, input_noise=input_noise, key=forward_key))
    per_layer = jnp.mean(
        jax.vmap(
            lambda h, k: network_reconstruction_losses(net, h, sigma=sigma, key=k)
        )(hs, jax.random.split(key, xb.shape[0])),
        axis=0,
    )
    return jnp.sum(per_layer), {"recon_loss": per_layer}


def _update(group, loss_fn, model, opt_state, config, learning_rate):
    """One optimizer step on the parameters labelled `group`; others held fixed."""
    diff, rest = eqx.partition(model, _spec(model, group))
    (_, metrics), grads = eqx.filter_value_and_grad(
        lambda d: loss_fn(eqx.combine(d, rest)), has_aux=True
    )(diff)
    opt = make_optimizer(config.optimizer, learning_rate)
    # optax's Adam mixes Python floats with int32 step counts, which strict dtype
    # promotion (a setting users and our tests may switch on) rejects.
    with jax.numpy_dtype_promotion("standard"):
        updates, state = opt.update(grads, opt_state[group], diff)
    model = eqx.combine(eqx.apply_updates(diff, updates), rest)
    return model, {**opt_state, group: state}, metrics


def make_step(
    model, opt_state, xb, yb, *, key, config: TrainConfig, phase: str, sigma, hyper=None
):
    """One training step of `phase` on a minibatch; returns `(model, opt_state, metrics)`.

    Args:
        model: a `DTPNetwork`, or a `DTPLayer` auto-encoder.
        opt_state: from `init_opt_state`.
        xb: inputs, shape `(batch, n_0)`; yb: labels, shape `(batch,)`.
        key: key for the noise and the stochastic units (keyword-only).
        config: a `TrainConfig` (keyword-only).
        phase: `"inverse"`, `"forward"`, `"per-batch"` (inverse then forward), `"bp"`,
            or `"autoencoder"` (decoder then encoder of a `DTPLayer` auto-encoder; see
            `dtp_eqx.autoencoder_losses`).
        sigma: noise standard deviation for this step (keyword-only).
        hyper: `{"top_step", "lr_forward", "lr_feedback"}` overriding `config`'s values,
            as (possibly traced) scalars; missing names come from `config` (keyword-only).
    """
    hyper = {**config.hyperparameters(), **(hyper or {})}
    metrics = {}
    inverse_key, forward_key = jax.random.split(key)
    if phase == "autoencoder":
        keys = jax.random.split(key, xb.shape[0])

        def part(*names):
            def loss(layer):
                losses = jax.vmap(
                    lambda x, k: autoencoder_losses(
                        layer, x, sigma=sigma, key=k, code_noise=hyper["code_noise"]
                    )
                )(xb, keys)
                means = {name: jnp.mean(losses[name]) for name in names}
                metrics = {"loss": means["decoder"]} if "decoder" in names else {}
                return sum(means.values()), metrics

            return loss

        if isinstance(model, TiedDTPLayer):  # W is shared: one step on both losses
            return _update(
                "forward", part("decoder", "encoder"), model, opt_state, config,
                hyper["lr_forward"],
            )
        model, opt_state, metrics = _update(
            "feedback", part("decoder"), model, opt_state, config, hyper["lr_feedback"]
        )
        model, opt_state, _ = _update(
            "forward", part("encoder"), model, opt_state, config, hyper["lr_forward"]
        )
        return model, opt_state, metrics
    if phase in ("inverse", "per-batch") and len(model.layers) > 1:
        model, opt_state, m = _update(
            "feedback",
            lambda net: inverse_loss(
                net, xb, sigma=sigma, key=inverse_key, input_noise=config.input_noise
            ),
            model,
            opt_state,
            config,
            hyper["lr_feedback"],
        )
        metrics.update(m)
    if phase in ("forward", "per-batch", "bp"):
        model, opt_state, m = _update(
            "forward",
            lambda net: forward_loss(
                net, xb, yb, config=config, key=forward_key, top_step=hyper["top_step"]
            ),
            model,
            opt_state,
            config,
            hyper["lr_forward"],
        )
        metrics.update(m)
    return model, opt_state, metrics


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


def as_key(key) -> Keys:
    """A typed key (or batch of keys) from `jax.random.key`, also accepting raw uint32 keys
    (from the legacy `jax.random.PRNGKey`, shape `(2,)` or `(n_models, 2)`).

    Raises:
        TypeError: for anything else, e.g. an integer seed `key=0`, naming `key` and
            saying to pass `jax.random.key(0)` instead.
    """

    def not_a_key(why: str = "") -> TypeError:
        if isinstance(key, (int, float, np.generic)) or np.ndim(key) == 0:
            shown = f"key={key!r}"
        else:
            kind = getattr(key, "dtype", type(key).__name__)
            shown = f"key (dtype {kind}, shape {np.shape(key)})"
        return TypeError(
            f"{shown} is not a JAX random key{why}; pass one made by jax.random.key, "
            "e.g. key=jax.random.key(0) (or jax.random.split(jax.random.key(0), n) for an "
            "ensemble of n models)."
        )

    if isinstance(key, (bool, int, float, complex, np.generic, str, bytes)) or key is None:
        raise not_a_key()
    try:
        key = jnp.asarray(key)
    except TypeError:
        raise not_a_key() from None
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype != jnp.uint32 or key.ndim == 0:
        raise not_a_key()
    try:
        return jax.random.wrap_key_data(key)
    except (TypeError, ValueError):
        raise not_a_key(
            " (raw key data is uint32 of shape (2,), or (n, 2) for n keys)"
        ) from None


def ensemble_size(model) -> int | None:
    """The number of stacked models in an ensemble built with `eqx.filter_vmap`, or None.

    Example:
        >>> nets = eqx.filter_vmap(lambda k: dtp_eqx.DTPNetwork((4, 3, 2), key=k))(
        ...     jax.random.split(jax.random.key(0), 8))
        >>> dtp_eqx.ensemble_size(nets)
        8
    """
    weight = model.forward.weight if isinstance(model, AbstractDTPLayer) else model.output.weight
    return int(weight.shape[0]) if weight.ndim == 3 else None


def ensemble_member(model, i: IntLike):
    """Member `i` of an ensemble (see `ensemble_size`), as an ordinary model.

    Example:
        >>> nets = eqx.filter_vmap(lambda k: dtp_eqx.DTPNetwork((4, 3, 2), key=k))(
        ...     jax.random.split(jax.random.key(0), 8))
        >>> dtp_eqx.ensemble_member(nets, 3).output.weight.shape
        (2, 3)
    """
    n = ensemble_size(model)
    if n is None:
        raise ValueError("model is not an ensemble (its weights have no leading member axis).")
    if not -n <= i < n:
        raise IndexError(f"i={i} is out of range for an ensemble of {n} members.")
    return jax.tree.map(lambda a: a[i] if eqx.is_array(a) else a, model)


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


def _is_autoencoder(model) -> bool:
    return isinstance(model, AbstractDTPLayer)


def _samples(model) -> bool:
    """Whether a forward pass of `model` draws random samples."""
    return any(not s.inference for s in getattr(model, "samplers", ()))


_WRAPPERS = ("jaxtyping", "beartype", "typeguard")
"""Packages whose runtime type checkers wrap functions in frames of their own."""


def _module(frame) -> str:
    return frame.f_globals.get("__name__", "") if frame is not None else ""


def _unwrap(frame):
    while _module(frame).partition(".")[0] in _WRAPPERS:
        frame = frame.f_back
    return frame


def _called_from_package() -> bool:
    """Whether the function calling this one was called from inside dtp_eqx (as `fit`
    calls `evaluate` on splits `check_arrays` has already checked), looking through the
    wrappers a type checker may add."""
    import sys

    caller = _unwrap(sys._getframe(1))  # the function that asks (this one may be wrapped)
    return _module(_unwrap(caller.f_back)).startswith("dtp_eqx.")


def _user_stacklevel() -> int:
    """The `stacklevel` for a warning raised by the function calling this one that
    points at the first frame outside dtp_eqx (and type-checker wrappers): the user's
    call of `fit` or `evaluate`."""
    import sys

    frame, level = _unwrap(sys._getframe(1)), 1  # the warning's caller: level 1
    while frame is not None and (
        _module(frame).startswith("dtp_eqx.") or _module(frame).partition(".")[0] in _WRAPPERS
    ):
        frame, level = frame.f_back, level + 1
    return level


def check_input_scale(x, what: str) -> None:
    """Reject integer inputs and warn on float inputs that look like 0-255 pixels.

    `x` is a NumPy or JAX array; `what` names it in the messages (e.g. `"x"`). Signed
    or Gaussian inputs (any negative value) are never warned about.

    Raises:
        ValueError: when `x` has an integer (or bool, or non-numeric) dtype.

    Warns:
        UserWarning: when `x` holds floats with minimum `>= 0` and maximum `> 2`, the
            range of 0-255 pixels, which dtp_eqx's networks expect scaled to [0, 1]. It
            points at the user's call (the first frame outside dtp_eqx).
    """
    dtype = np.dtype(x.dtype)
    if not np.issubdtype(dtype, np.floating):
        hint = " (0-255 pixels: x.astype(np.float32) / 255)" if np.issubdtype(
            dtype, np.integer) else ""
        raise ValueError(
            f"{what} has dtype {dtype}; expected floating-point inputs{hint}, e.g. "
            "pixels scaled to [0, 1]."
        )
    if x.size == 0:
        return
    xp = np if isinstance(x, np.ndarray) else jnp
    lo, hi = float(xp.min(x)), float(xp.max(x))
    if lo >= 0 and hi > 2:
        import warnings

        warnings.warn(
            f"{what} ranges over [{lo:g}, {hi:g}], like 0-255 pixels: dtp_eqx's networks "
            "expect inputs scaled to [0, 1] (divide by 255: x / 255), and inputs this "
            "large saturate their units.",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def check_labels(y, n: int, n_classes: int, what: str) -> None:
    """Raise a `ValueError` naming `what` (e.g. `"train labels"`) unless `y`, a NumPy or
    JAX array, holds `n` integer labels in `[0, n_classes)`, shape `(n,)`."""
    if y.shape != (n,) or not np.issubdtype(np.dtype(y.dtype), np.integer):
        raise ValueError(
            f"{what} have shape {y.shape} and dtype {y.dtype}; expected "
            f"integers of shape ({n},)."
        )
    if n:
        xp = np if isinstance(y, np.ndarray) else jnp
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{what} range over [{lo}, {hi}]; the network has "
                f"{n_classes} classes, so labels must lie in [0, {n_classes - 1}]."
            )


def check_arrays(model, x, y, name: str) -> tuple[Array, Array]:
    """Validate one split on the host and move it to the device as float32 / int32.

    `name` (`"train"`, `"valid"`, `"test"`) names the split in the messages: `x` is
    `data.x_{name}`, shape `(n, n_in)`, and `y` is `data.y_{name}`, shape `(n,)`. An
    auto-encoder (a single layer) ignores labels, which may then be None.

    Raises:
        ValueError: for inputs of the wrong shape, of an integer dtype (such as uint8
            pixels: pass `x.astype(np.float32) / 255`) or with NaN or infinite values,
            and for labels that are not integers of shape `(n,)` in `[0, n_classes)`.

    Warns:
        UserWarning: for float inputs that look like 0-255 pixels (minimum `>= 0`,
            maximum `> 2`); see `check_input_scale`.
    """
    x = np.asarray(x)
    n_in = model.in_features
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(
            f"{name} inputs have shape {x.shape}; the model expects (n, {n_in})."
        )
    check_input_scale(x, f"data.x_{name} (the {name} inputs)")
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise ValueError(f"{name} inputs contain {bad} NaN or infinite values.")
    if _is_autoencoder(model):
        return jnp.asarray(x, jnp.float32), jnp.zeros(x.shape[0], jnp.int32)
    y = np.asarray(y)
    check_labels(y, x.shape[0], model.n_classes, f"{name} labels")
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
