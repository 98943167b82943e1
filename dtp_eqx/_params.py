"""Parameter groups: which arrays of a model are forward, feedback or frozen weights
(`param_labels`), the filter spec of one group, and the optimizer state of each group
(`init_opt_state`)."""

from __future__ import annotations

import equinox as eqx
import jax

from ._config import TrainConfig, make_optimizer
from ._layers import AbstractDTPLayer, TiedDTPLayer
from ._models import ensemble_size


def param_labels(model) -> object:
    """Label each parameter array of a `DTPNetwork` `"forward"`, `"feedback"` or `"frozen"`.

    Forward weights of the hidden and output layers are `"forward"`; the feedback
    mappings of hidden layers `2 .. M-1` are `"feedback"`; layer 1's feedback, which no
    target uses, is `"frozen"`. More generally, a layer's feedback is `"frozen"` when no
    layer below it has forward parameters (below a parameter-free first layer such as
    `dtp_eqx.ImageLayer`, the first convolution's feedback is frozen), since the targets
    it would send down train nothing. Parameter-free layers get no labels. For a single
    layer (an auto-encoder), `forward` is
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
    trained_below = False  # whether a layer below this one has forward parameters
    for k, layer in enumerate(model.layers):
        if _has_arrays(layer.feedback):
            label = "feedback" if trained_below else "frozen"
            labels = eqx.tree_at(
                lambda m: m.layers[k].feedback,
                labels,
                jax.tree.map(lambda _: label, layer.feedback),
            )
        trained_below = trained_below or _has_arrays(layer.forward)
    return labels


def _has_arrays(tree) -> bool:
    return any(eqx.is_array(leaf) for leaf in jax.tree.leaves(tree))


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
