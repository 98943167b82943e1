import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtp_eqx


def test_activations_and_logits(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), key=getkey())
    assert net.sizes == (6, 5, 4, 3)
    assert len(net.layers) == 2
    x = jax.random.normal(getkey(), (6,))
    hs = net.activations(x)
    assert [h.shape for h in hs] == [(6,), (5,), (4,), (3,)]
    assert hs[0] is x
    assert jnp.allclose(hs[2], net.layers[1](net.layers[0](x)))
    assert jnp.allclose(net(x), hs[-1])


def test_vmap_and_jit_shapes(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), key=getkey())
    x = jax.random.normal(getkey(), (10, 6))
    hs = eqx.filter_jit(lambda n, x: jax.vmap(n.activations)(x))(net, x)
    assert [h.shape for h in hs] == [(10, 6), (10, 5), (10, 4), (10, 3)]
    assert jax.vmap(net)(x).shape == (10, 3)


def test_layers_get_different_weights(getkey):
    net = dtp_eqx.DTPNetwork((4, 4, 4, 4, 2), key=getkey())
    w = [layer.forward.weight for layer in net.layers]
    assert not jnp.allclose(w[1], w[2])


@pytest.mark.parametrize("init", ["orthogonal", "glorot"])
def test_inits(init, getkey):
    net = dtp_eqx.DTPNetwork((4, 4, 2), init=init, key=getkey())
    assert jnp.all(net.output.bias == 0)


@pytest.mark.parametrize("sizes", [(4, 2), (4,), (4, 0, 2)])
def test_bad_sizes(sizes, getkey):
    with pytest.raises(ValueError, match="sizes="):
        dtp_eqx.DTPNetwork(sizes, key=getkey())


@pytest.mark.parametrize("sizes", [(4, 2.5, 2), (True, 3, 2)])
def test_sizes_must_be_integers(sizes, getkey):
    # a TypeError, from the runtime type checker in tests or from DTPNetwork itself
    with pytest.raises(TypeError):
        dtp_eqx.DTPNetwork(sizes, key=getkey())


def test_unknown_activation(getkey):
    with pytest.raises(ValueError, match="activation='swish'"):
        dtp_eqx.DTPNetwork((4, 3, 2), activation="swish", key=getkey())


def test_wrong_input_size(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 3), key=getkey())
    with pytest.raises(ValueError, match=r"x has shape \(7,\), expected .*\(6,\); batch"):
        net(jnp.zeros(7))


def test_sign_network_structure(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), units="sign", key=getkey())
    assert type(net.layers[0]) is dtp_eqx.DTPLayer
    assert type(net.layers[1]) is dtp_eqx.DiscreteDTPLayer
    assert not net.stochastic
    x = jax.random.normal(getkey(), (6,))
    hs = net.activations(x)
    assert jnp.allclose(hs[2], jnp.tanh(net.layers[1].forward(jnp.sign(hs[1]))), atol=1e-6)
    assert net.means(hs) == hs[1:-1]


def test_switching_sign_modes(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 4, 3), units="sign", key=getkey())
    ste = dtp_eqx.straight_through(net)
    cont = dtp_eqx.continuous(net)
    assert [l.sign_mode for l in ste.layers[1:]] == ["straight-through"] * 2
    assert [l.sign_mode for l in cont.layers[1:]] == ["continuous"] * 2
    assert [l.sign_mode for l in dtp_eqx.with_sign(cont).layers[1:]] == ["sign"] * 2
    x = jax.random.normal(getkey(), (6,))
    assert jnp.array_equal(ste(x), net(x))  # same values, other derivatives
    assert not jnp.allclose(cont(x), net(x))
    # a network without such units is returned as it is
    plain = dtp_eqx.DTPNetwork((6, 5, 3), key=getkey())
    assert dtp_eqx.straight_through(plain) is plain


def test_bernoulli_network(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 4, 3), activation="sigmoid", units="bernoulli", key=getkey())
    assert net.stochastic and len(net.samplers) == 2
    x = jax.random.normal(getkey(), (6,))
    with pytest.raises(RuntimeError, match="needs a key"):
        net(x)
    key = getkey()
    hs = net.activations(x, key=key)
    assert all(set(np.asarray(h).tolist()) <= {0.0, 1.0} for h in hs[1:-1])
    assert jnp.array_equal(net(x, key=key), hs[-1])
    ps = net.means(hs)
    assert jnp.allclose(ps[1], jax.nn.sigmoid(net.layers[1].forward(hs[1])))
    mean_field = eqx.nn.inference_mode(net)
    assert jnp.array_equal(mean_field(x), mean_field(x, key=getkey()))
    assert dtp_eqx.straight_through(net).samplers[0].straight_through


def test_bernoulli_needs_sigmoid(getkey):
    with pytest.raises(ValueError, match="activation must be 'sigmoid', not 'tanh'"):
        dtp_eqx.DTPNetwork((6, 5, 3), units="bernoulli", key=getkey())
    with pytest.raises(ValueError, match="units='ternary'"):
        dtp_eqx.DTPNetwork((6, 5, 3), units="ternary", key=getkey())
