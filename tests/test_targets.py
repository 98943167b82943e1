import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtp_eqx


def _random_feedback(net, key):
    """The same network with arbitrary (untrained) feedback weights."""

    def scramble(layer, key):
        kw, kb = jax.random.split(key)
        fb = layer.feedback
        return eqx.tree_at(
            lambda l: (l.feedback.weight, l.feedback.bias),
            layer,
            (3 * jax.random.normal(kw, fb.weight.shape), jax.random.normal(kb, fb.bias.shape)),
        )

    keys = jax.random.split(key, len(net.layers))
    return eqx.tree_at(
        lambda n: n.layers, net, tuple(scramble(l, k) for l, k in zip(net.layers, keys))
    )


def _exact_inverse_net(key, n=5, depth=3):
    """Identity-activation layers whose feedback is the exact inverse of the forward map."""
    net = dtp_eqx.DTPNetwork((n,) * (depth + 1) + (3,), activation="identity", key=key)

    def invert(layer):
        w = layer.forward.weight + 2.0 * jnp.eye(n)  # well conditioned
        b = jnp.linspace(-0.5, 0.5, n)
        w_inv = jnp.linalg.inv(w)
        return eqx.tree_at(
            lambda l: (l.forward.weight, l.forward.bias, l.feedback.weight, l.feedback.bias),
            layer,
            (w, b, w_inv, -w_inv @ b),
        )

    return eqx.tree_at(lambda m: m.layers, net, tuple(invert(l) for l in net.layers))


def test_shapes(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3, 2), key=getkey())
    hs = net.activations(jax.random.normal(getkey(), (6,)))
    ts = dtp_eqx.compute_targets(net, hs, 1, top_step=0.1)
    assert [t.shape for t in ts] == [(5,), (4,), (3,)]


@pytest.mark.parametrize("method", ["dtp", "tp"])
def test_top_target_is_a_gradient_step(method, getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), key=getkey())
    hs = net.activations(jax.random.normal(getkey(), (6,)))
    ts = dtp_eqx.compute_targets(net, hs, 2, top_step=0.5, method=method)
    grad = jax.grad(lambda h: dtp_eqx.cross_entropy(net.output(h), 2))(hs[-2])
    assert jnp.allclose(ts[-1], hs[-2] - 0.5 * grad, atol=1e-6)
    # the step lowers the example's loss
    assert dtp_eqx.cross_entropy(net.output(ts[-1]), 2) < dtp_eqx.cross_entropy(hs[-1], 2)


def test_dtp_target_equals_activation_when_top_target_does(getkey):
    """t_i = h_i gives t_{i-1} = h_{i-1} whatever the feedback weights are."""
    net = _random_feedback(dtp_eqx.DTPNetwork((6, 5, 5, 5, 3), key=getkey()), getkey())
    hs = net.activations(jax.random.normal(getkey(), (6,)))
    ts = dtp_eqx.compute_targets(net, hs, 0, top_step=0.0, method="dtp")
    for t, h in zip(ts, hs[1:-1]):
        assert jnp.allclose(t, h, atol=1e-6)
    # plain target propagation has no such guarantee with a bad inverse
    ts_tp = dtp_eqx.compute_targets(net, hs, 0, top_step=0.0, method="tp")
    assert not jnp.allclose(ts_tp[0], hs[1], atol=1e-2)


def test_dtp_equals_tp_with_an_exact_inverse(getkey):
    net = _exact_inverse_net(getkey())
    x = jax.random.normal(getkey(), (5,))
    hs = net.activations(x)
    for layer, h_prev, h in zip(net.layers, hs[:-2], hs[1:-1]):
        assert jnp.allclose(layer.inverse(h), h_prev, atol=1e-4)
    y = jnp.argmin(hs[-1])  # the least likely class: a large first step
    dtp = dtp_eqx.compute_targets(net, hs, y, top_step=0.3, method="dtp")
    tp = dtp_eqx.compute_targets(net, hs, y, top_step=0.3, method="tp")
    for a, b in zip(dtp, tp):
        assert jnp.allclose(a, b, atol=1e-4)
    assert jnp.linalg.norm(dtp[0] - hs[1]) > 1e-2  # the targets did move


def test_batched_with_vmap(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), key=getkey())
    x = jax.random.normal(getkey(), (8, 6))
    y = jnp.arange(8) % 3
    hs = jax.vmap(net.activations)(x)
    ts = jax.vmap(lambda h, y: dtp_eqx.compute_targets(net, h, y, top_step=0.1))(hs, y)
    single = dtp_eqx.compute_targets(net, tuple(h[3] for h in hs), y[3], top_step=0.1)
    assert [t.shape for t in ts] == [(8, 5), (8, 4)]
    assert jnp.allclose(ts[0][3], single[0], atol=1e-6)


def test_top_step_from_eta():
    assert dtp_eqx.top_step_from_eta(0.327736, 100) == pytest.approx(0.00327736)


def test_top_step_matches_batch_mean_eta(getkey):
    """A per-example step eta / B equals the original code's step eta on the batch-mean loss."""
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), key=getkey())
    x = jax.random.normal(getkey(), (10, 6))
    y = jnp.arange(10) % 3
    hs = jax.vmap(net.activations)(x)
    eta = 0.8
    mean_grad = jax.grad(
        lambda h: jnp.mean(jax.vmap(lambda hi, yi: dtp_eqx.cross_entropy(net.output(hi), yi))(h, y))
    )(hs[-2])
    top_step = dtp_eqx.top_step_from_eta(eta, 10)
    ts = jax.vmap(lambda h, y: dtp_eqx.compute_targets(net, h, y, top_step=top_step))(hs, y)
    assert jnp.allclose(ts[-1], hs[-2] - eta * mean_grad, atol=1e-6)


def test_unknown_method(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 3), key=getkey())
    hs = net.activations(jnp.zeros(6))
    with pytest.raises(ValueError, match="method='gaussnewton'"):
        dtp_eqx.compute_targets(net, hs, 0, top_step=0.1, method="gaussnewton")


def test_wrong_number_of_activations(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), key=getkey())
    hs = net.activations(jnp.zeros(6))
    with pytest.raises(ValueError, match="activations has 3 entries, expected 4"):
        dtp_eqx.compute_targets(net, hs[:-1], 0, top_step=0.1)


def test_stochastic_targets_live_on_probabilities(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), activation="sigmoid", units="bernoulli", key=getkey())
    hs = net.activations(jax.random.normal(getkey(), (6,)), key=getkey())
    ps = net.means(hs)
    # a zero step gives the probabilities back, whatever the feedback weights
    ts = dtp_eqx.compute_targets(net, hs, 1, top_step=0.0)
    for t, p in zip(ts, ps):
        assert jnp.allclose(t, p, atol=1e-6)
    # the first target is the step on the sample, moved onto the probability
    ts = dtp_eqx.compute_targets(net, hs, 1, top_step=0.7)
    step = dtp_eqx.top_target(net.output, hs[-2], 1, top_step=0.7) - hs[-2]
    assert jnp.allclose(ts[-1], ps[-1] + step, atol=1e-6)
    g = net.layers[1].inverse
    assert jnp.allclose(ts[0], ps[0] + g(ts[1]) - g(ps[1]), atol=1e-6)


@pytest.mark.parametrize(
    "y, match",
    [
        (3, r"y=3 is out of range: the network has 3 classes, so a label must lie in \[0, 2\]"),
        (-1, r"y=-1 is out of range: .*\[0, 2\]"),
        (np.int64(7), r"y=7 is out of range: .*\[0, 2\]"),
        (jnp.asarray(3), r"y=3 is out of range: .*\[0, 2\]"),
    ],
)
def test_concrete_labels_are_checked(y, match, getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), key=getkey())
    hs = net.activations(jax.random.normal(getkey(), (6,)))
    with pytest.raises(ValueError, match=match):
        dtp_eqx.compute_targets(net, hs, y, top_step=0.1)
    # traced labels (inside jit or vmap) cannot be checked and are not
    jax.jit(lambda h, yi: dtp_eqx.compute_targets(net, h, yi, top_step=0.1))(hs, 2)
