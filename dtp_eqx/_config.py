"""How to train: the type aliases of the training API, the method, schedule, optimizer,
hyperparameter and phase names, the optimizers (`original_rmsprop`, `make_optimizer`),
the small validators of sizes and rates, and `TrainConfig`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optax
from jaxtyping import Array, Float, Key, PRNGKeyArray

from ._feedback import FEEDBACK_RULES
from ._layers import check_choice

Keys = PRNGKeyArray | Key[Array, " n_models"]
"""One key, or one key per member of an ensemble."""
IntLike = int | np.integer
"""A Python or NumPy integer (such as `np.int64`); a bool is rejected where a size is due."""
FloatLike = float | np.floating
"""A Python or NumPy float (such as `np.float32`)."""
Scalar = float | np.floating | Float[Array, ""]
"""A Python or NumPy float, or a traced scalar (a hyperparameter vmapped over an ensemble)."""

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
        feedback_rule: how the feedback mappings train, one of
            `dtp_eqx.FEEDBACK_RULES`: `"reconstruction"` (the paper's noise-preserving
            inverse loss; default), `"drl"` (Meulemans et al. 2020's difference
            reconstruction loss) or `"l-drl"` (Ernoult et al. 2022's local form); see
            `dtp_eqx.feedback_losses`. `sigma` is each rule's noise scale.
        feedback_iterations: optimizer steps of the feedback mappings per minibatch
            of an inverse or per-batch pass, each with fresh noise (default 1; Ernoult
            et al. use 20-55 per layer in their sequential VGG runs).
        feedback_samples: noise draws averaged in each feedback step (default 1).

    Sizes and rates may be Python or NumPy numbers (`np.int64(100)`, `np.float32(1e-3)`);
    NumPy ones are stored as Python numbers.

    Raises:
        ValueError: for an unknown `method`, `schedule` or `optimizer`; `epochs`,
            `batch_size`, `n_samples`, `feedback_iterations` or `feedback_samples` that
            are not positive integers (a bool is not
            one); `lr_forward`, `lr_feedback` or `top_step` that are not positive finite
            numbers; `sigma`, `input_noise` or `code_noise` that are not finite
            non-negative numbers (NaN and infinity are rejected); a `sigma_tau` that is
            neither None nor a positive finite number; an `anneal_from` or
            `inverse_warmup` that is not a non-negative integer; an unknown
            `feedback_rule`, or `"drl"` with `sigma = 0`.
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
    feedback_rule: str = "reconstruction"
    feedback_iterations: IntLike = 1
    feedback_samples: IntLike = 1

    def __post_init__(self):
        check_choice("method", self.method, TRAIN_METHODS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("feedback_rule", self.feedback_rule, FEEDBACK_RULES)
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
        for name in ("epochs", "batch_size", "n_samples", "feedback_iterations",
                     "feedback_samples"):
            check_positive_int(name, getattr(self, name))
        for name in ("lr_forward", "lr_feedback", "top_step"):
            value = getattr(self, name)
            if not (_is_real(value) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value!r} must be a positive finite number.")
        for name in ("sigma", "input_noise", "code_noise"):
            value = getattr(self, name)
            if not (_is_real(value) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value!r} must be a finite non-negative number.")
        if self.feedback_rule == "drl" and self.sigma == 0:
            raise ValueError(
                "sigma=0 with feedback_rule='drl': the difference reconstruction loss "
                "divides by sigma^2, so sigma must be positive."
            )
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
