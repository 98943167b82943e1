"""The paper's networks and the original code's settings, by experiment name."""

from __future__ import annotations

import dataclasses

from jaxtyping import PRNGKeyArray

from ._layers import check_choice
from ._network import DTPNetwork
from ._targets import top_step_from_eta
from ._train import TrainConfig

BATCH = 100

# name: network keyword arguments, and per method the TrainConfig fields that differ
# from the defaults. eta values are the original code's batch-mean steps.
_EXPERIMENTS = {
    "mnist-deep": {
        "network": dict(sizes=(784,) + (240,) * 7 + (10,), activation="tanh", init="orthogonal"),
        "dtp": dict(top_step=top_step_from_eta(0.327736, BATCH), lr_forward=0.0148893,
                    lr_feedback=0.00501149, sigma=0.359830, epochs=100),
        "bp": dict(lr_forward=8.04437e-4, epochs=100),
    },
    "discrete": {
        "network": dict(sizes=(784, 500, 500, 10), activation="tanh", init="orthogonal",
                        units="sign"),
        "dtp": dict(top_step=top_step_from_eta(27.9655, BATCH), lr_forward=6.60055e-4,
                    lr_feedback=4.32832e-4, sigma=0.5, sigma_tau=50.0, epochs=500),
        # The original code gives no separate step size for its back-prop baselines of
        # the discrete network; they use the DTP forward learning rate.
        "bp": dict(lr_forward=6.60055e-4, epochs=500),
    },
    "stochastic": {
        "network": dict(sizes=(784, 200, 200, 10), activation="sigmoid", init="glorot",
                        units="bernoulli"),
        "dtp": dict(top_step=top_step_from_eta(58.4385, BATCH), lr_forward=3.08740e-3,
                    lr_feedback=2.71629e-6, sigma=0.5, sigma_tau=100.0, input_noise=0.3,
                    epochs=1000),
        "bp": dict(lr_forward=4.58495e-3, input_noise=0.3, epochs=1000),
    },
}
PAPER_EXPERIMENTS = tuple(_EXPERIMENTS)
"""Experiments with a network and settings in `paper_network` / `paper_config`."""


def paper_network(experiment: str, *, key: PRNGKeyArray) -> DTPNetwork:
    """The paper's network for `experiment` (one of `dtp_eqx.PAPER_EXPERIMENTS`).

    `"mnist-deep"`: 784-240x7-10 tanh, orthogonal init. `"discrete"`: 784-500-500-10,
    `h_2 = tanh(W_2 sign(h_1) + b_2)`, orthogonal init. `"stochastic"`: 784-200-200-10
    sigmoid-Bernoulli units, Glorot init.

    Example:
        >>> net = dtp_eqx.paper_network("discrete", key=jax.random.key(0))
        >>> net.sizes
        (784, 500, 500, 10)
    """
    check_choice("experiment", experiment, PAPER_EXPERIMENTS)
    return DTPNetwork(**_EXPERIMENTS[experiment]["network"], key=key)


def paper_config(experiment: str, method: str = "dtp", **overrides) -> TrainConfig:
    """The original code's `TrainConfig` for `experiment` trained by `method`.

    Target-prop methods (`"dtp"`, `"tp"`) take the DTP settings (step `eta / 100`, both
    learning rates, noise and its annealing); the back-prop methods (`"bp"`, `"ste"`,
    `"bp-continuous"`) take the back-prop learning rate. All use the alternate-epoch
    schedule, minibatches of 100 and the centered RMSprop with momentum. `overrides`
    replace any field, e.g. `epochs=5`.

    Example:
        >>> dtp_eqx.paper_config("stochastic", "ste", epochs=5).lr_forward
        0.00458495
    """
    check_choice("experiment", experiment, PAPER_EXPERIMENTS)
    settings = _EXPERIMENTS[experiment]
    fields = settings["dtp"] if method in ("dtp", "tp") else settings["bp"]
    return dataclasses.replace(TrainConfig(method=method, **fields), **overrides)
