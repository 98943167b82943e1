import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import dtp_eqx


def _grads(loss, layer):
    return eqx.filter_grad(loss)(layer)


def _norm(tree):
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(tree))


def test_cross_entropy_matches_softmax(getkey):
    logits = jax.random.normal(getkey(), (4,))
    assert jnp.allclose(dtp_eqx.cross_entropy(logits, 2), -jnp.log(jax.nn.softmax(logits)[2]))


def test_layer_loss_trains_forward_only(getkey):
    layer = dtp_eqx.DTPLayer(4, 3, key=getkey())
    h_prev, t = jax.random.normal(getkey(), (4,)), jax.random.normal(getkey(), (3,))
    assert jnp.allclose(dtp_eqx.layer_loss(layer, h_prev, t), jnp.sum((layer(h_prev) - t) ** 2))
    grads = _grads(lambda l: dtp_eqx.layer_loss(l, h_prev, t), layer)
    assert _norm(grads.forward) > 0
    assert _norm(grads.feedback) == 0
    # the input and the target are constants
    assert jnp.all(jax.grad(lambda h: dtp_eqx.layer_loss(layer, h, t))(h_prev) == 0)
    assert jnp.all(jax.grad(lambda tt: dtp_eqx.layer_loss(layer, h_prev, tt))(t) == 0)


def test_reconstruction_loss_trains_feedback_only(getkey):
    layer = dtp_eqx.DTPLayer(4, 3, key=getkey())
    h_prev = jax.random.normal(getkey(), (4,))
    key = getkey()
    grads = _grads(lambda l: dtp_eqx.reconstruction_loss(l, h_prev, sigma=0.3, key=key), layer)
    assert _norm(grads.feedback) > 0
    assert _norm(grads.forward) == 0


def test_reconstruction_target_is_the_corrupted_input(getkey):
    layer = dtp_eqx.DTPLayer(4, 3, key=getkey())
    h_prev, key = jax.random.normal(getkey(), (4,)), getkey()
    noisy = h_prev + 0.3 * jax.random.normal(key, (4,))
    expected = jnp.sum((layer.inverse(layer(noisy)) - noisy) ** 2)
    got = dtp_eqx.reconstruction_loss(layer, h_prev, sigma=0.3, key=key)
    assert jnp.allclose(got, expected, atol=1e-5)


def test_sigma_is_a_standard_deviation(getkey):
    """The corruption has the requested standard deviation."""
    layer = dtp_eqx.DTPLayer(2000, 3, activation="identity", key=getkey())
    layer = eqx.tree_at(lambda l: l.feedback.weight, layer, jnp.zeros((2000, 3)))
    # with g = 0 the loss is ||h + e||^2; at h = 0 its mean per unit is sigma^2
    loss = dtp_eqx.reconstruction_loss(layer, jnp.zeros(2000), sigma=0.5, key=getkey())
    assert loss / 2000 == pytest.approx(0.25, rel=0.1)


def test_clean_reconstruction_needs_no_key(getkey):
    layer = dtp_eqx.DTPLayer(4, 3, key=getkey())
    h_prev = jax.random.normal(getkey(), (4,))
    got = dtp_eqx.reconstruction_loss(layer, h_prev)
    assert jnp.allclose(got, jnp.sum((layer.inverse(layer(h_prev)) - h_prev) ** 2))


def test_negative_sigma_and_missing_key(getkey):
    layer = dtp_eqx.DTPLayer(4, 3, key=getkey())
    with pytest.raises(ValueError, match="sigma=-0.1"):
        dtp_eqx.reconstruction_loss(layer, jnp.zeros(4), sigma=-0.1, key=getkey())
    with pytest.raises(ValueError, match="needs a key"):
        dtp_eqx.reconstruction_loss(layer, jnp.zeros(4), sigma=0.1)


def test_output_loss_trains_output_only(getkey):
    net = dtp_eqx.DTPNetwork((4, 3, 2), key=getkey())
    h = jax.random.normal(getkey(), (3,))
    assert jnp.all(jax.grad(lambda hh: dtp_eqx.output_loss(net.output, hh, 1))(h) == 0)
    assert _norm(_grads(lambda o: dtp_eqx.output_loss(o, h, 1), net.output)) > 0


def test_stochastic_reconstruction_reads_a_sample_of_the_noisy_probability(getkey):
    """As the original code: g(f(b)) against p + e, with b ~ Bernoulli(p + e)."""
    layer = dtp_eqx.DTPLayer(6, 5, activation="sigmoid", feedback_activation="tanh",
                             init="glorot", key=getkey())
    sampler = dtp_eqx.StochasticBinary()
    p, key = jax.nn.sigmoid(jax.random.normal(getkey(), (6,))), getkey()
    noise_key, sample_key = jax.random.split(key)
    noisy = p + 0.4 * jax.random.normal(noise_key, (6,))
    b = jax.random.bernoulli(sample_key, noisy).astype(p.dtype)
    expected = jnp.sum((layer.inverse(layer(b)) - noisy) ** 2)
    got = dtp_eqx.reconstruction_loss(layer, p, sigma=0.4, key=key, sampler=sampler)
    assert jnp.allclose(got, expected, atol=1e-5)
    # the layer reads zeros and ones, so the loss differs from reading p + e itself
    assert not jnp.allclose(got, jnp.sum((layer.inverse(layer(noisy)) - noisy) ** 2))
    with pytest.raises(ValueError, match="needs a key"):
        dtp_eqx.reconstruction_loss(layer, p, sampler=sampler)


def test_network_reconstruction_losses_per_trained_layer(getkey):
    """Layers 2 .. M-1 reconstruct their inputs; stochastic ones their input's probability."""
    net = dtp_eqx.DTPNetwork((8, 6, 5, 4, 3), key=getkey())
    hs = net.activations(jax.random.normal(getkey(), (8,)))
    got = dtp_eqx.network_reconstruction_losses(net, hs)
    assert got.shape == (2,)
    for i in (1, 2):
        assert jnp.allclose(got[i - 1], dtp_eqx.reconstruction_loss(net.layers[i], hs[i]))

    net = dtp_eqx.DTPNetwork((8, 6, 5, 3), activation="sigmoid", units="bernoulli",
                             key=getkey())
    hs = net.activations(jax.random.uniform(getkey(), (8,)), key=getkey())
    key = getkey()
    got = dtp_eqx.network_reconstruction_losses(net, hs, key=key)
    p_1 = net.layers[0](hs[0])
    expected = dtp_eqx.reconstruction_loss(
        net.layers[1], p_1, key=jax.random.split(key, 2)[1], sampler=net.samplers[0])
    assert got.shape == (1,) and jnp.allclose(got[0], expected)
