"""Looking inside: angles between DTP and back-prop updates, and inverse quality."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._losses import cross_entropy, reconstruction_loss
from ._targets import compute_targets
from ._train import TrainConfig, forward_loss


def angle_degrees(a, b) -> Float[Array, ""]:
    """Angle in degrees between two arrays of the same shape, seen as flat vectors."""
    a, b = jnp.ravel(a), jnp.ravel(b)
    cos = jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def _loss_with_shifts(net, x, y, shifts):
    h = x
    for layer, shift in zip(net.layers, shifts):
        h = layer(h) + shift
    return cross_entropy(net.output(h), y)


@eqx.filter_jit
def angles_to_backprop(
    net,
    x: Float[Array, "batch n_in"],
    y: Int[Array, " batch"],
    *,
    top_step: float,
    method: str = "dtp",
) -> dict[str, Float[Array, " n_hidden"]]:
    """Per hidden layer, the angle (degrees) between the target-prop and back-prop directions.

    On one minibatch, `"weight"` compares the update of each hidden layer's weights `W_i`
    (the gradient of its local loss `||f_i(h_{i-1}) - t_i||^2`) with the back-prop
    gradient `dL/dW_i` of the batch-mean cross-entropy; `"activation"` compares the
    target displacement `t_i - h_i` with `-dL/dh_i` over the whole batch. Below 90
    degrees, the target-prop update is a descent direction of the global loss.

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(batch, n_0)`; y: labels, shape `(batch,)`.
        top_step: per-example first-target step (keyword-only).
        method: `"dtp"` or `"tp"` (keyword-only).

    Returns:
        `{"weight": (M-1,), "activation": (M-1,)}` angles for layers `1 .. M-1`.
    """
    config = TrainConfig(method="bp")
    bp_grads = eqx.filter_grad(lambda n: forward_loss(n, x, y, config=config)[0])(net)
    config = TrainConfig(method=method, top_step=top_step)
    tp_grads = eqx.filter_grad(lambda n: forward_loss(n, x, y, config=config)[0])(net)
    weight = jnp.stack(
        [
            angle_degrees(a.forward.weight, b.forward.weight)
            for a, b in zip(tp_grads.layers, bp_grads.layers)
        ]
    )
    hs = jax.vmap(net.activations)(x)
    ts = jax.vmap(lambda h, y: compute_targets(net, h, y, top_step=top_step, method=method))(
        hs, y
    )
    zeros = tuple(jnp.zeros(h.shape[1:], h.dtype) for h in hs[1:-1])
    dl_dh = jax.vmap(jax.grad(lambda s, xi, yi: _loss_with_shifts(net, xi, yi, s)), (None, 0, 0))(
        zeros, x, y
    )
    activation = jnp.stack(
        [angle_degrees(t - h, -g) for t, h, g in zip(ts, hs[1:-1], dl_dh)]
    )
    return {"weight": weight, "activation": activation}


@eqx.filter_jit
def reconstruction_errors(
    net, x: Float[Array, "n n_in"]
) -> Float[Array, " n_inverses"]:
    """Clean reconstruction error `||g_i(f_i(h_{i-1})) - h_{i-1}||^2` of layers 2 .. M-1.

    Args:
        net: a `DTPNetwork`.
        x: inputs, shape `(n, n_0)`.

    Returns:
        Batch means for the `M - 2` trained feedback mappings, shape `(M - 2,)`
        (empty for a single hidden layer).
    """
    hs = jax.vmap(net.activations)(x)
    errors = [
        jnp.mean(jax.vmap(lambda h, layer=layer: reconstruction_loss(layer, h))(hs[i]))
        for i, layer in enumerate(net.layers)
        if i > 0
    ]
    return jnp.stack(errors) if errors else jnp.zeros((0,), x.dtype)
