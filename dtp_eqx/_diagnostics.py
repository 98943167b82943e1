"""Looking inside: angles between DTP and back-prop updates, and inverse quality."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._config import Keys, TrainConfig
from ._layers import check_choice
from ._losses import check_nonnegative, cross_entropy, network_reconstruction_losses
from ._models import ensemble_size
from ._network import straight_through
from ._step import forward_loss
from ._targets import METHODS, compute_targets

REFERENCES = ("bp", "ste")
"""Gradients to compare target propagation with: plain back-prop or straight-through."""


def angle_degrees(a, b) -> Float[Array, ""]:
    """Angle in degrees between two arrays of the same shape, seen as flat vectors."""
    a, b = jnp.ravel(a), jnp.ravel(b)
    cos = jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def _loss_with_shifts(net, x, y, key, shifts):
    """One example's cross-entropy with `shifts[i]` added to `h_{i+1}` (same samples as
    `net.activations(x, key=key)`), whose derivative at zero shifts is `dL/dh`."""
    keys = jax.random.split(key, len(net.layers))
    h = x
    for i, (layer, shift) in enumerate(zip(net.layers, shifts)):
        h = layer(h)
        if net.samplers:
            h = net.samplers[i](h, key=keys[i])
        h = h + shift
    return cross_entropy(net.output(h), y)


def _batch_targets(net, x, y, keys, top_step, method):
    """Activations (one key per example), targets and the means targets are compared with."""
    hs = jax.vmap(lambda xi, k: net.activations(xi, key=k))(x, keys)
    ts = jax.vmap(
        lambda h, yi: compute_targets(net, h, yi, top_step=top_step, method=method)
    )(hs, y)
    return hs, ts, jax.vmap(net.means)(hs)


@eqx.filter_jit
def angles_to_backprop(
    net,
    x: Float[Array, "batch n_in"],
    y: Int[Array, " batch"],
    *,
    top_step: float | Float[Array, ""],
    method: str = "dtp",
    reference: str = "bp",
    key: PRNGKeyArray | None = None,
) -> dict[str, Float[Array, " n_hidden"]]:
    """Per hidden layer, the angle (degrees) between the target-prop and back-prop directions.

    On one minibatch, `"weight"` (theta_W) compares the update of each hidden layer's
    weights `W_i` (the gradient of its local loss `||f_i(h_{i-1}) - t_i||^2`) with the
    back-prop gradient `dL/dW_i` of the batch-mean cross-entropy; `"activation"` compares
    the target displacement `t_i - p_i` with `-dL/dh_i` over the whole batch, seen as one
    vector; `"offset"` (theta_h) is the same angle taken per example and averaged over
    the batch, the quantity a per-example bound such as `cos theta >= 1/kappa(J)` speaks
    of. Below 90 degrees, the target-prop update is a descent direction of the global
    loss. All use the same samples of stochastic units.

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(batch, n_0)`; y: labels, shape `(batch,)`.
        top_step: per-example first-target step (keyword-only).
        method: `"dtp"` or `"tp"` (keyword-only).
        reference: `"bp"` (back-prop through the network as it is, which is zero below
            a sign or a sample) or `"ste"` (the straight-through estimator) (keyword-only).
        key: key for the stochastic units' samples (keyword-only).

    Returns:
        A dict of angles for layers `1 .. M-1`, each of shape `(M-1,)`, under the keys
        `"weight"`, `"activation"` and `"offset"` (NaN where the reference gradient is
        zero; `"offset"` averages over the examples where it is not).
    """
    check_choice("reference", reference, REFERENCES)
    key = jax.random.key(0) if key is None else key

    def weight_grads(config, step=None):
        grads = eqx.filter_grad(
            lambda n: forward_loss(n, x, y, config=config, key=key, top_step=step)[0]
        )(net)
        return [getattr(layer.forward, "weight", jnp.nan) for layer in grads.layers]

    bp = weight_grads(TrainConfig(method=reference))
    # the step is passed on its own: it may be traced (one compilation for many steps)
    tp = weight_grads(TrainConfig(method=method), top_step)
    weight = jnp.stack([angle_degrees(a, b) for a, b in zip(tp, bp)])

    # Same per-example keys as forward_loss (no input noise): split(key)[1], then per example.
    keys = jax.random.split(jax.random.split(key)[1], x.shape[0])
    hs, ts, ps = _batch_targets(net, x, y, keys, top_step, method)
    ref_net = straight_through(net) if reference == "ste" else net
    zeros = tuple(jnp.zeros(h.shape[1:], h.dtype) for h in hs[1:-1])
    dl_dh = jax.vmap(
        jax.grad(lambda s, xi, yi, k: _loss_with_shifts(ref_net, xi, yi, k, s)),
        (None, 0, 0, 0),
    )(zeros, x, y, keys)
    activation = jnp.stack([angle_degrees(t - p, -g) for t, p, g in zip(ts, ps, dl_dh)])
    offset = jnp.stack([jnp.nanmean(jax.vmap(angle_degrees)(t - p, -g))
                        for t, p, g in zip(ts, ps, dl_dh)])
    return {"weight": weight, "activation": activation, "offset": offset}


@eqx.filter_jit
def target_offsets(
    net,
    x: Float[Array, "batch n_in"],
    y: Int[Array, " batch"],
    *,
    top_step: float | Float[Array, ""],
    method: str = "dtp",
    key: PRNGKeyArray | None = None,
) -> Float[Array, " n_hidden"]:
    """Per hidden layer, how far the targets sit from the activations: mean `||t_i - h_i||`.

    With `top_step=0` the loss asks for no change, so any offset is the rule's own
    error: zero for DTP (up to rounding), the inverses' reconstruction error carried
    down for TP. For a stochastic network, targets and activations are compared as
    probabilities (`t_i - p_i`).

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(batch, n_0)`; y: labels, shape `(batch,)`.
        top_step: per-example first-target step, `>= 0` (keyword-only).
        method: `"dtp"` or `"tp"` (keyword-only).
        key: key for the stochastic units' samples (keyword-only).

    Returns:
        Batch means of the Euclidean offsets for layers `1 .. M-1`, shape `(M-1,)`.
    """
    ts, ps = _checked_targets(net, x, y, top_step, method, key)
    return jnp.stack([jnp.mean(jnp.linalg.norm(t - p, axis=-1)) for t, p in zip(ts, ps)])


def batch_targets(
    net,
    x: Float[Array, "batch n_in"],
    y: Int[Array, " batch"],
    *,
    top_step: float | Float[Array, ""],
    method: str = "dtp",
    key: PRNGKeyArray | None = None,
) -> tuple[tuple[Array, ...], tuple[Array, ...], tuple[Array, ...]]:
    """Activations, targets and means of a batch: `compute_targets` for every example.

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(batch, n_0)`; y: labels, shape `(batch,)`.
        top_step: per-example first-target step, `>= 0` (keyword-only).
        method: `"dtp"` or `"tp"` (keyword-only).
        key: key for the stochastic units' samples, split into one per example (default:
            key 0) (keyword-only).

    Returns:
        `(hs, ts, ps)`: the activations `h_0 .. h_M`, shapes `(batch, n_i)`; the targets
        `t_1 .. t_{M-1}`, shapes `(batch, n_i)`; and the means `p_1 .. p_{M-1}` the
        targets are compared with (the activations themselves for deterministic units,
        the firing probabilities for stochastic ones).
    """
    check_choice("method", method, METHODS)
    check_nonnegative("top_step", top_step)
    key = jax.random.key(0) if key is None else key
    return _jit_batch_targets(net, x, y, jax.random.split(key, x.shape[0]), top_step, method)


_jit_batch_targets = eqx.filter_jit(_batch_targets)


@eqx.filter_jit
def activation_spread(
    net, x: Float[Array, "batch n_in"], *, key: PRNGKeyArray | None = None
) -> Float[Array, " n_hidden"]:
    """Per hidden layer, how much its units vary with the input.

    The standard deviation of each unit of `h_i` across the examples of `x`, averaged
    over the units. Near 0, the layer gives every input the same code: it has collapsed
    (what plain target propagation with poor inverses does to a deep network).

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(batch, n_0)`.
        key: key for the stochastic units' samples (keyword-only).

    Returns:
        The spreads of layers `1 .. M-1`, shape `(M-1,)`.
    """
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, x.shape[0])
    hs = jax.vmap(lambda xi, k: net.activations(xi, key=k))(x, keys)
    return jnp.stack([jnp.mean(jnp.std(h, axis=0)) for h in hs[1:-1]])


def weight_gradient_norms(
    net,
    x: Float[Array, "batch n_in"],
    y: Int[Array, " batch"],
    *,
    method: str = "bp",
    top_step: float | Float[Array, ""] | None = None,
    key: PRNGKeyArray | None = None,
) -> Float[Array, " n_layers"]:
    """Norm of the weight update `method` computes for each layer, on one minibatch.

    The gradient of `method`'s training loss (`forward_loss`: the cross-entropy for the
    back-prop methods, the sum of layer-local losses for `"dtp"` and `"tp"`) with
    respect to each layer's forward weights and the output layer's. Back-prop through a
    sign or a sample gives exactly 0 below it; the other methods do not.

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(batch, n_0)`; y: labels, shape `(batch,)`.
        method: one of `dtp_eqx.TRAIN_METHODS` (keyword-only).
        top_step: the first-target step of `"dtp"`/`"tp"` (default: `TrainConfig`'s)
            (keyword-only).
        key: key for the stochastic units' samples (keyword-only).

    Returns:
        Norms for `W_1 .. W_{M-1}` and the output weights `W_M`, shape `(M,)`.
    """
    config = TrainConfig(method=method)
    if top_step is not None:
        check_nonnegative("top_step", top_step)
    key = jax.random.key(0) if key is None else key
    return _weight_gradient_norms(net, x, y, config, top_step, key)


@eqx.filter_jit
def _weight_gradient_norms(net, x, y, config, top_step, key):
    grads = eqx.filter_grad(
        lambda n: forward_loss(n, x, y, config=config, key=key, top_step=top_step)[0]
    )(net)
    weights = [layer.forward.weight for layer in grads.layers] + [grads.output.weight]
    return jnp.stack([jnp.linalg.norm(w) for w in weights])


def _checked_targets(net, x, y, top_step, method, key):
    """Targets and the means they are compared with, for checked arguments (one key per
    example, split from `key` or from key 0)."""
    check_choice("method", method, METHODS)
    check_nonnegative("top_step", top_step)
    key = jax.random.key(0) if key is None else key
    _, ts, ps = _batch_targets(net, x, y, jax.random.split(key, x.shape[0]), top_step, method)
    return ts, ps


@eqx.filter_jit
def target_consistency(
    net,
    x: Float[Array, "batch n_in"],
    y: Int[Array, " batch"],
    *,
    top_step: float | Float[Array, ""],
    method: str = "dtp",
    key: PRNGKeyArray | None = None,
) -> dict[str, Float[Array, " n_inverses"]]:
    """Per propagated layer, how well a target below reproduces the target above.

    Target propagation wants `f_i(t_{i-1}) = t_i`: if layer `i-1` reaches its target,
    layer `i`'s input then produces layer `i`'s target. To first order the DTP target
    moves by `J_g (t_i - h_i)`, so `f_i(t_{i-1}) - t_i = (J_f J_g - I)(t_i - h_i)`: the
    error measures how far `J_f J_g` is from the identity on the directions targets
    actually move in, the condition the difference correction relies on.

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(batch, n_0)`; y: labels, shape `(batch,)`.
        top_step: per-example first-target step, `> 0` (keyword-only).
        method: `"dtp"` or `"tp"` (keyword-only).
        key: key for the stochastic units' samples (keyword-only).

    Returns:
        For layers `i = 2 .. M-1` (the `M - 2` layers whose targets are propagated
        through `g_i`), arrays of shape `(M - 2,)`: `"error"`, the batch mean of
        `||f_i(t_{i-1}) - t_i||`, and `"relative"`, that error divided by the batch mean
        of `||t_i - h_i||` (0: consistent; 1: no better than leaving `t_{i-1} = h_{i-1}`).
    """
    ts, ps = _checked_targets(net, x, y, top_step, method, key)
    error, offset = [], []
    for i in range(1, len(ts)):
        reached = jax.vmap(net.layers[i])(ts[i - 1])
        error.append(jnp.mean(jnp.linalg.norm(reached - ts[i], axis=-1)))
        offset.append(jnp.mean(jnp.linalg.norm(ts[i] - ps[i], axis=-1)))
    error, offset = jnp.stack(error), jnp.stack(offset)
    return {"error": error, "relative": error / offset}


def reconstruction_errors(
    net, x: Float[Array, "n n_in"], *, key: Keys | None = None
) -> Float[Array, "*n_models n_inverses"]:
    """Clean reconstruction error `||g_i(f_i(h_{i-1})) - h_{i-1}||^2` of layers 2 .. M-1.

    In a stochastic network `h_{i-1}` is the probability `p_{i-1}` and `f_i` reads a
    sample of it (see `dtp_eqx.reconstruction_loss`).

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(n, n_0)`.
        key: key for sampling the activations of a stochastic network (keyword-only).

    Returns:
        Batch means for the `M - 2` trained feedback mappings, shape `(M - 2,)`
        (empty for a single hidden layer); `(n_models, M - 2)` for an ensemble, whose
        `key`, if any, then has shape `(n_models,)`.
    """
    if ensemble_size(net) is not None:
        return _reconstruction_errors_ensemble(net, x, key)
    return _reconstruction_errors(net, x, key)


def _reconstruction_errors_impl(net, x, key):
    if key is None:
        hs = jax.vmap(net.activations)(x)
    else:
        keys = jax.random.split(key, x.shape[0])
        hs = jax.vmap(lambda xi, k: net.activations(xi, key=k))(x, keys)
    if net.stochastic:
        keys = jax.random.split(jax.random.fold_in(key, 1), x.shape[0])
        losses = jax.vmap(lambda h, k: network_reconstruction_losses(net, h, key=k))(hs, keys)
    else:
        losses = jax.vmap(lambda h: network_reconstruction_losses(net, h))(hs)
    return jnp.mean(losses, axis=0)


_reconstruction_errors = eqx.filter_jit(_reconstruction_errors_impl)
_reconstruction_errors_ensemble = eqx.filter_jit(
    eqx.filter_vmap(_reconstruction_errors_impl, in_axes=(eqx.if_array(0), None, eqx.if_array(0)))
)
