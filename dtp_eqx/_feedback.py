"""Feedback-training rules: how the feedback mappings `g_i` learn, as pure per-example losses.

Each rule maps one example's activations `(h_0, ..., h_M)` (as from `net.activations`)
to one loss per trained feedback mapping (layers `2 .. M-1`, shape `(M - 2,)`), whose
gradient with respect to `g_i`'s parameters is that mapping's update. The forward
mappings are held constant (`stop_gradient`); so are the feedback mappings of the other
layers. Every rule only calls `layer(h)` and `layer.inverse(h)` and sums over all axes
of an activation, so it works for dense and convolutional layers alike.

- `"reconstruction"` (Lee et al. 2015; the default): the noise-preserving inverse loss
  `||g_i(f_i(h_{i-1} + e)) - (h_{i-1} + e)||^2`, `e ~ N(0, sigma^2 I)`
  (`dtp_eqx.reconstruction_loss`). It trains `g_i` on the forward image only.
- `"drl"` (difference reconstruction loss, Meulemans et al. 2020): corrupt `h_{i-1}`,
  run the corrupted activation up to the last hidden layer, propagate it back down with
  the difference-corrected feedback mappings of the layers above (held constant) and of
  layer `i`, and compare with the corrupted activation, scaled by `1 / sigma^2`:
  `||h_{i-1} + g_i(r_i) - g_i(h_i) - (h_{i-1} + e)||^2 / sigma^2`, where `r_i` is the
  corrupted activation sent up to `h_{M-1}` and back down to layer `i`. It trains the
  difference-corrected feedback path to invert the forward path from layer `i - 1` to the
  top, so that DTP's targets approximate Gauss-Newton targets.
- `"l-drl"` (local difference reconstruction loss, Ernoult et al. 2022): with
  `r = g_i(h_i)`, `e_x, e_y ~ N(0, sigma^2 I)`,
  `-2 e_x . (g_i(f_i(h_{i-1} + e_x)) - r) + ||g_i(h_i + e_y) - r||^2`. Its minimum over
  a linearised `g_i` has `J_g = J_f^T`: the feedback Jacobian matches the transpose of
  the forward Jacobian, so targets follow back-prop's direction.

Each rule averages its loss over `samples` independent noise draws.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from ._layers import check_choice
from ._losses import check_nonnegative, network_reconstruction_losses, sg

FEEDBACK_RULES = ("reconstruction", "drl", "l-drl")
"""Feedback-training rules by name: the 2015 noise-preserving reconstruction, the
difference reconstruction loss (DRL) and its layer-local form (L-DRL)."""


def _frozen(layer):
    """`layer` with every array held constant (no gradient reaches its parameters)."""
    return jax.tree.map(lambda a: sg(a) if eqx.is_array(a) else a, layer)


def _sum(x: Array) -> Float[Scalar, ""]:
    return jnp.sum(x)


def _noise(key: PRNGKeyArray, like: Array, sigma) -> Array:
    return sigma * jax.random.normal(key, like.shape, like.dtype)


def drl_loss(
    net,
    activations: tuple[Float[Array, " ..."], ...],
    index: int,
    *,
    sigma: float | Float[Scalar, ""],
    key: PRNGKeyArray,
) -> Float[Scalar, ""]:
    """Difference reconstruction loss of layer `index + 1`'s feedback (`net.layers[index]`).

    With `i = index + 1`, `h = activations`, `e ~ N(0, sigma^2 I)`: send `h_{i-1} + e` up
    through layers `i .. M-1` to `r_{M-1}`, then down, for `k = M-1 .. i`,
    `r_{k-1} = h_{k-1} + g_k(r_k) - g_k(h_k)`, with the feedback mappings above layer
    `i` held constant; the loss is `||r_{i-1} - (h_{i-1} + e)||^2 / sigma^2`, summed over
    units. As in Meulemans et al.'s DTPDRL code, the noise enters at layer `i - 1` only
    and there is no second, minimal-norm term.

    Args:
        net: a `DTPNetwork` with deterministic units.
        activations: `(h_0, ..., h_M)` of one example.
        index: `1 .. len(net.layers) - 1`, the position of the trained layer in `net.layers`.
        sigma: noise standard deviation, `> 0` (keyword-only).
        key: key for the noise (keyword-only).
    """
    hs = sg(activations)
    noisy = hs[index] + _noise(key, hs[index], sigma)
    layers = [_frozen(layer) for layer in net.layers]
    r = noisy
    for layer in layers[index:]:
        r = layer(r)
    # back down through the layers above, then through layer i's own (trained) feedback
    for k in range(len(net.layers) - 1, index - 1, -1):
        g = (net.layers[k] if k == index else layers[k]).inverse
        r = hs[k] + g(r) - g(hs[k + 1])
    return _sum((r - noisy) ** 2) / sigma**2


def ldrl_loss(
    layer,
    h_prev: Float[Array, " ..."],
    h: Float[Array, " ..."],
    *,
    sigma: float | Float[Scalar, ""],
    key: PRNGKeyArray,
) -> Float[Scalar, ""]:
    """Local difference reconstruction loss of one layer's feedback (Ernoult et al. 2022).

    `-2 e_x . (g(f(h_prev + e_x)) - g(h)) + ||g(h + e_y) - g(h)||^2`, with `h = f(h_prev)`
    and `e_x`, `e_y` independent draws of `N(0, sigma^2 I)`, summed over units; the
    forward mapping is held constant.

    Args:
        layer: the layer whose feedback `g` is trained.
        h_prev: its input for one example; h: its output `f(h_prev)`.
        sigma: noise standard deviation (keyword-only).
        key: key for the two noise draws (keyword-only).
    """
    x_key, y_key = jax.random.split(key)
    h_prev, h = sg(h_prev), sg(h)
    r = layer.inverse(h)
    dx = _noise(x_key, h_prev, sigma)
    r_dx = layer.inverse(_frozen(layer)(h_prev + dx))
    dy = _noise(y_key, h, sigma)
    r_dy = layer.inverse(h + dy)
    return -2 * _sum(dx * (r_dx - r)) + _sum((r_dy - r) ** 2)


def feedback_losses(
    net,
    activations: tuple[Float[Array, " ..."], ...],
    *,
    rule: str = "reconstruction",
    sigma: float | Float[Scalar, ""],
    key: PRNGKeyArray,
    samples: int = 1,
) -> Float[Array, " n_trained"]:
    """The feedback loss of each trained feedback mapping (layers `2 .. M-1`) of one example.

    Args:
        net: a `DTPNetwork`; `"drl"` and `"l-drl"` need deterministic units.
        activations: `(h_0, ..., h_M)` of one example, as from `net.activations(x)`.
        rule: one of `FEEDBACK_RULES` (keyword-only).
        sigma: noise standard deviation (keyword-only); `"drl"` divides by `sigma^2`.
        key: key for the noise (keyword-only).
        samples: number of independent noise draws averaged (keyword-only).

    Returns:
        Shape `(M - 2,)`: one loss per layer `2 .. M-1`.
    """
    check_choice("rule", rule, FEEDBACK_RULES)
    check_nonnegative("sigma", sigma)
    if rule != "reconstruction" and net.stochastic:
        raise ValueError(
            f"rule={rule!r} needs deterministic units; this network samples its units "
            "(units='bernoulli'): use rule='reconstruction'."
        )

    def one_draw(k):
        if rule == "reconstruction":
            return network_reconstruction_losses(net, activations, sigma=sigma, key=k)
        keys = jax.random.split(k, len(net.layers))
        if rule == "drl":
            losses = [drl_loss(net, activations, i, sigma=sigma, key=keys[i])
                      for i in range(1, len(net.layers))]
        else:
            losses = [ldrl_loss(net.layers[i], activations[i], activations[i + 1],
                                sigma=sigma, key=keys[i])
                      for i in range(1, len(net.layers))]
        return jnp.stack(losses) if losses else jnp.zeros((0,), activations[0].dtype)

    if samples == 1:
        return one_draw(key)
    return jnp.mean(jax.vmap(one_draw)(jax.random.split(key, samples)), axis=0)

