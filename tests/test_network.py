import equinox as eqx
import jax
import jax.numpy as jnp
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
