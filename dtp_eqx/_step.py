"""One training step: the activations of a batch in training, the forward loss of each
method (`forward_loss`), the feedback mappings' loss (`inverse_loss`), the optimizer
step on one parameter group, and `make_step`, which runs a phase's updates on one
minibatch."""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp

from ._autoencoder import autoencoder_losses
from ._config import BACKPROP_METHODS, Scalar, TrainConfig, make_optimizer
from ._layers import TiedDTPLayer
from ._feedback import feedback_losses
from ._losses import cross_entropy, layer_loss, output_loss, sg
from ._network import continuous, straight_through
from ._params import _spec
from ._targets import compute_targets


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


def inverse_loss(net, xb, *, sigma, key, input_noise: float = 0.0,
                 rule: str = "reconstruction", samples: int = 1):
    """Summed batch-mean feedback losses of the feedback mappings of layers 2 .. M-1.

    With the default `rule="reconstruction"`, layer `i`'s feedback learns to reconstruct
    the (corrupted) input `h_{i-1}` that layer `i` received in a training forward pass of
    the batch `xb`, shape `(batch, n_0)`; in a stochastic network, the probability
    `p_{i-1}` read through a fresh sample (see `dtp_eqx.network_reconstruction_losses`).
    `rule` may also be `"drl"` or `"l-drl"`, averaged over `samples` noise draws (see
    `dtp_eqx.feedback_losses`). Returns the total and the per-layer losses, shape
    `(M - 2,)`.
    """
    forward_key, key = jax.random.split(key)
    hs = sg(training_activations(net, xb, input_noise=input_noise, key=forward_key))
    per_layer = jnp.mean(
        jax.vmap(
            lambda h, k: feedback_losses(
                net, h, rule=rule, sigma=sigma, key=k, samples=samples
            )
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
    if phase == "autoencoder":
        return _autoencoder_step(model, opt_state, xb, key=key, config=config,
                                 sigma=sigma, hyper=hyper)
    metrics = {}
    inverse_key, forward_key = jax.random.split(key)
    if phase in ("inverse", "per-batch") and len(model.layers) > 1:
        model, opt_state, m = _feedback_update(
            model, opt_state, xb, key=inverse_key, config=config, sigma=sigma, hyper=hyper
        )
        metrics.update(m)
    if phase in ("forward", "per-batch", "bp"):
        model, opt_state, m = _forward_update(
            model, opt_state, xb, yb, key=forward_key, config=config, hyper=hyper
        )
        metrics.update(m)
    return model, opt_state, metrics


def _feedback_update(model, opt_state, xb, *, key, config, sigma, hyper):
    """`config.feedback_iterations` optimizer steps of the feedback parameters on the
    feedback loss of `config.feedback_rule` (`inverse_loss`), each with fresh noise."""

    def one(model, opt_state, k):
        return _update(
            "feedback",
            lambda net: inverse_loss(
                net, xb, sigma=sigma, key=k, input_noise=config.input_noise,
                rule=config.feedback_rule, samples=config.feedback_samples,
            ),
            model,
            opt_state,
            config,
            hyper["lr_feedback"],
        )

    if config.feedback_iterations == 1:
        return one(model, opt_state, key)
    params, static = eqx.partition(model, eqx.is_array)

    def body(carry, k):
        model, opt_state, metrics = one(eqx.combine(carry[0], static), carry[1], k)
        return (eqx.filter(model, eqx.is_array), opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(
        body, (params, opt_state), jax.random.split(key, config.feedback_iterations)
    )
    # the metrics of the last iteration, as one step would report them
    return eqx.combine(params, static), opt_state, jax.tree.map(lambda m: m[-1], metrics)


def _forward_update(model, opt_state, xb, yb, *, key, config, hyper):
    """One optimizer step of the forward parameters on `forward_loss`."""
    return _update(
        "forward",
        lambda net: forward_loss(
            net, xb, yb, config=config, key=key, top_step=hyper["top_step"]
        ),
        model,
        opt_state,
        config,
        hyper["lr_forward"],
    )


def _autoencoder_step(model, opt_state, xb, *, key, config, sigma, hyper):
    """The `"autoencoder"` phase of `make_step`: decoder, then encoder, of a `DTPLayer`
    (one step on both losses for a `TiedDTPLayer`), on `autoencoder_losses`."""
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
