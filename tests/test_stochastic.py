import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtp_eqx


def test_samples_are_binary_with_the_right_mean(getkey):
    unit = dtp_eqx.StochasticBinary()
    p = jnp.linspace(0.05, 0.95, 7)
    b = unit(p, key=getkey())
    assert b.shape == p.shape and b.dtype == p.dtype
    assert set(np.asarray(b).tolist()) <= {0.0, 1.0}
    samples = jax.vmap(lambda k: unit(p, key=k))(jax.random.split(getkey(), 4000))
    np.testing.assert_allclose(samples.mean(axis=0), p, atol=0.04)


def test_keys(getkey):
    unit = dtp_eqx.StochasticBinary()
    p = jnp.full(200, 0.5)
    key = getkey()
    assert jnp.array_equal(unit(p, key=key), unit(p, key=key))
    assert not jnp.array_equal(unit(p, key=key), unit(p, key=getkey()))


def test_missing_key_in_training_raises():
    with pytest.raises(RuntimeError, match="needs a key"):
        dtp_eqx.StochasticBinary()(jnp.full(3, 0.5))


def test_inference_mode_is_deterministic(getkey):
    unit = dtp_eqx.StochasticBinary()
    p = jax.random.uniform(getkey(), (5,))
    frozen = eqx.nn.inference_mode(unit)
    assert frozen.inference
    assert jnp.array_equal(frozen(p), p)
    assert jnp.array_equal(frozen(p, key=getkey()), frozen(p, key=getkey()))
    assert jnp.array_equal(unit(p, inference=True), p)
    back = eqx.nn.inference_mode(frozen, value=False)
    assert set(np.asarray(back(p, key=getkey())).tolist()) <= {0.0, 1.0}


def test_gradients(getkey):
    p = jnp.full(4, 0.5)
    key = getkey()
    plain = jax.grad(lambda q: jnp.sum(dtp_eqx.StochasticBinary()(q, key=key)))(p)
    assert jnp.all(plain == 0)
    ste_unit = dtp_eqx.StochasticBinary(straight_through=True)
    ste = jax.grad(lambda q: jnp.sum(2.0 * ste_unit(q, key=key)))(p)
    assert jnp.all(ste == 2.0)
    # the straight-through sample has the same values
    assert jnp.array_equal(ste_unit(p, key=key), dtp_eqx.StochasticBinary()(p, key=key))


def test_sample_probabilities_average_to_evaluate(getkey):
    net = dtp_eqx.DTPNetwork((6, 5, 5, 3), activation="sigmoid", units="bernoulli", key=getkey())
    x = jax.random.uniform(getkey(), (40, 6))
    y = jnp.arange(40) % 3
    key = getkey()
    probs = dtp_eqx.sample_probabilities(net, x, key=key, n_samples=7)
    assert probs.shape == (7, 40, 3)
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, rtol=1e-5)
    # different samples differ, and their average is evaluate's prediction
    assert not np.allclose(probs[0], probs[1])
    error = np.mean(np.argmax(np.mean(probs, axis=0), axis=-1) != np.asarray(y))
    assert dtp_eqx.evaluate(net, x, y, key=key, n_samples=7)["error"] == pytest.approx(error)
    with pytest.raises(ValueError, match="sample"):
        dtp_eqx.sample_probabilities(eqx.nn.inference_mode(net), x, key=key)
