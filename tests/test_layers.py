import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtp_eqx


@pytest.mark.parametrize("activation", sorted(dtp_eqx.ACTIVATIONS))
def test_forward_and_inverse_shapes(activation, getkey):
    layer = dtp_eqx.DTPLayer(5, 3, activation=activation, key=getkey())
    assert isinstance(layer.forward, eqx.nn.Linear)
    assert isinstance(layer.feedback, eqx.nn.Linear)
    assert layer.forward.weight.shape == (3, 5)
    assert layer.feedback.weight.shape == (5, 3)
    h_prev = jax.random.normal(getkey(), (5,))
    h = layer(h_prev)
    assert h.shape == (3,)
    assert layer.inverse(h).shape == (5,)
    fn = dtp_eqx.ACTIVATIONS[activation]
    assert jnp.allclose(h, fn(layer.forward.weight @ h_prev + layer.forward.bias))


def test_batch_with_vmap_and_jit(getkey):
    layer = dtp_eqx.DTPLayer(5, 3, key=getkey())
    x = jax.random.normal(getkey(), (7, 5))
    h = eqx.filter_jit(lambda l, x: jax.vmap(l)(x))(layer, x)
    assert h.shape == (7, 3)
    assert jax.vmap(layer.inverse)(h).shape == (7, 5)
    assert jnp.allclose(h[2], layer(x[2]), atol=1e-6)


def test_feedback_activation_defaults_and_overrides(getkey):
    layer = dtp_eqx.DTPLayer(4, 4, activation="relu", key=getkey())
    assert layer.feedback_activation == "relu"
    layer = dtp_eqx.DTPLayer(4, 4, activation="relu", feedback_activation="identity", key=getkey())
    h = jnp.ones(4)
    assert jnp.allclose(layer.inverse(h), layer.feedback(h))


def test_orthogonal_init_and_zero_bias(getkey):
    layer = dtp_eqx.DTPLayer(6, 6, init="orthogonal", key=getkey())
    w = layer.forward.weight
    assert jnp.allclose(w @ w.T, jnp.eye(6), atol=1e-5)
    assert jnp.all(layer.forward.bias == 0) and jnp.all(layer.feedback.bias == 0)


def test_glorot_init_bounds(getkey):
    layer = dtp_eqx.DTPLayer(300, 100, init="glorot", key=getkey())
    limit = np.sqrt(6 / (300 + 100))
    w = np.asarray(layer.forward.weight)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit


def test_forward_and_feedback_keys_differ(getkey):
    layer = dtp_eqx.DTPLayer(4, 4, key=getkey())
    assert not jnp.allclose(layer.forward.weight, layer.feedback.weight)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "softsign"}, "activation='softsign'"),
        ({"feedback_activation": "cube"}, "feedback_activation='cube'"),
        ({"init": "he"}, "init='he'"),
    ],
)
def test_bad_arguments_raise(kwargs, match, getkey):
    with pytest.raises(ValueError, match=match):
        dtp_eqx.DTPLayer(4, 3, key=getkey(), **kwargs)


def test_abstract_layer_cannot_be_instantiated():
    with pytest.raises(TypeError):
        dtp_eqx.AbstractDTPLayer()


def test_sign_values_and_gradients():
    x = jnp.array([-2.0, -0.1, 0.0, 0.3, 5.0])
    expected = jnp.array([-1.0, -1.0, 1.0, 1.0, 1.0])
    for mode in ("sign", "straight-through"):
        assert jnp.array_equal(dtp_eqx.sign(x, mode=mode), expected)
    assert jnp.array_equal(dtp_eqx.sign(x, mode="continuous"), x)
    grad = lambda mode: jax.grad(lambda v: jnp.sum(3.0 * dtp_eqx.sign(v, mode=mode)))(x)  # noqa: E731
    assert jnp.all(grad("sign") == 0)
    assert jnp.all(grad("straight-through") == 3.0)
    assert jnp.all(grad("continuous") == 3.0)
    with pytest.raises(ValueError, match="mode='hard'"):
        dtp_eqx.sign(x, mode="hard")


def test_sign_activation(getkey):
    layer = dtp_eqx.DTPLayer(4, 3, activation="sign", feedback_activation="tanh", key=getkey())
    h = layer(jax.random.normal(getkey(), (4,)))
    assert set(np.asarray(h).tolist()) <= {-1.0, 1.0}


def test_discrete_layer_reads_signs(getkey):
    layer = dtp_eqx.DiscreteDTPLayer(4, 3, key=getkey())
    assert isinstance(layer.forward, eqx.nn.Linear) and isinstance(layer.feedback, eqx.nn.Linear)
    h_prev = jnp.array([0.2, -0.1, 0.7, -0.9])
    assert jnp.allclose(layer(h_prev), jnp.tanh(layer.forward(jnp.array([1.0, -1.0, 1.0, -1.0]))))
    # only the sign matters, in both directions
    assert jnp.array_equal(layer(h_prev), layer(3 * h_prev))
    h = jnp.array([0.5, -0.2, 0.1])
    assert jnp.array_equal(layer.inverse(h), layer.inverse(jnp.sign(h)))
    # no derivative reaches the input through the sign
    assert jnp.all(jax.grad(lambda v: jnp.sum(layer(v)))(h_prev) == 0)
    ste = eqx.tree_at(lambda l: l.sign_mode, layer, "straight-through")
    assert jnp.any(jax.grad(lambda v: jnp.sum(ste(v)))(h_prev) != 0)
    with pytest.raises(ValueError, match="sign_mode='soft'"):
        dtp_eqx.DiscreteDTPLayer(4, 3, sign_mode="soft", key=getkey())
