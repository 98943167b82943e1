"""Feedback-training rules (`dtp_eqx._feedback`) and the Jacobian-alignment diagnostic."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dtp_eqx
from dtp_eqx._step import _feedback_update


def linear_net(sizes=(3, 3, 3, 3, 2), seed=0):
    """A network whose hidden layers are affine (identity activation): its Jacobians are
    its weights, so every rule has a closed-form expectation."""
    return dtp_eqx.DTPNetwork(sizes, activation="identity", init="glorot",
                              key=jax.random.key(seed))


def feedback_grad(net, h, rule, sigma, samples, index):
    """Gradient of the rule's loss of layer `index + 1` wrt every feedback weight."""
    def loss(n):
        return dtp_eqx.feedback_losses(n, h, rule=rule, sigma=sigma,
                                       key=jax.random.key(7), samples=samples)[index - 1]
    return eqx.filter_grad(loss)(net)


def test_ldrl_expected_gradient_is_back_props_transpose_by_hand():
    # For affine f(x) = W x + b and g(h) = V h + c, L-DRL's loss is
    # -2 e_x.(V W e_x) + ||V e_y||^2, whose expectation is sigma^2 (-2 tr(V W) + ||V||_F^2):
    # the gradient wrt V is 2 sigma^2 (V - W^T), zero exactly at V = W^T.
    net, sigma = linear_net(), 0.5
    h = net.activations(jnp.array([0.3, -0.2, 0.5]))
    grads = feedback_grad(net, h, "l-drl", sigma, samples=20000, index=1)
    layer = net.layers[1]
    expected = 2 * sigma**2 * (layer.feedback.weight - layer.forward.weight.T)
    np.testing.assert_allclose(grads.layers[1].feedback.weight, expected, atol=0.03)
    # nothing but layer 2's feedback moves
    assert float(jnp.abs(grads.layers[1].forward.weight).max()) == 0.0
    assert float(jnp.abs(grads.layers[2].feedback.weight).max()) == 0.0


def test_ldrl_is_zero_in_expectation_at_the_transpose():
    net = linear_net()
    layer = net.layers[1]
    net = eqx.tree_at(lambda n: n.layers[1].feedback.weight, net, layer.forward.weight.T)
    h = net.activations(jnp.array([0.3, -0.2, 0.5]))
    grads = feedback_grad(net, h, "l-drl", 0.5, samples=20000, index=1)
    assert float(jnp.abs(grads.layers[1].feedback.weight).max()) < 0.03


def test_drl_expected_loss_is_the_path_inverse_error_by_hand():
    # Affine layers: the corrupted activation sent up from h_1 and back down with the
    # difference-corrected feedbacks gives r_1 - h_1 = V_2 V_3 W_3 W_2 e, so the loss
    # ||(V_2 V_3 W_3 W_2 - I) e||^2 / sigma^2 has expectation ||V_2 V_3 W_3 W_2 - I||_F^2.
    net, sigma = linear_net(), 0.1
    h = net.activations(jnp.array([0.3, -0.2, 0.5]))
    losses = dtp_eqx.feedback_losses(net, h, rule="drl", sigma=sigma,
                                     key=jax.random.key(3), samples=20000)
    w = [layer.forward.weight for layer in net.layers]
    v = [layer.feedback.weight for layer in net.layers]
    eye = jnp.eye(3)
    layer2 = jnp.sum((v[1] @ v[2] @ w[2] @ w[1] - eye) ** 2)
    layer3 = jnp.sum((v[2] @ w[2] - eye) ** 2)
    np.testing.assert_allclose(losses, [layer2, layer3], rtol=0.05)


def test_drl_trains_only_its_own_layers_feedback():
    net = linear_net()
    h = net.activations(jnp.array([0.3, -0.2, 0.5]))
    grads = feedback_grad(net, h, "drl", 0.1, samples=1, index=1)
    assert float(jnp.abs(grads.layers[1].feedback.weight).max()) > 0
    assert float(jnp.abs(grads.layers[2].feedback.weight).max()) == 0.0
    assert all(float(jnp.abs(layer.forward.weight).max()) == 0.0 for layer in grads.layers)


def test_reconstruction_rule_is_the_2015_loss():
    net = dtp_eqx.DTPNetwork((5, 4, 4, 4, 2), key=jax.random.key(0))
    h = net.activations(jnp.linspace(-1, 1, 5))
    key = jax.random.key(4)
    np.testing.assert_array_equal(
        dtp_eqx.feedback_losses(net, h, sigma=0.3, key=key),
        dtp_eqx.network_reconstruction_losses(net, h, sigma=0.3, key=key),
    )


def test_feedback_iterations_are_that_many_sequential_steps():
    net = dtp_eqx.DTPNetwork((6, 5, 5, 5, 2), key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 6))
    y = jnp.arange(8) % 2
    config = dtp_eqx.TrainConfig(feedback_rule="l-drl", feedback_iterations=3, batch_size=8)
    one = dtp_eqx.TrainConfig(feedback_rule="l-drl", batch_size=8)
    state = dtp_eqx.init_opt_state(net, config)
    got, _, _ = dtp_eqx.make_step(net, state, x, y, key=jax.random.key(2), config=config,
                                  phase="inverse", sigma=0.2)
    want, s = net, state
    inverse_key = jax.random.split(jax.random.key(2))[0]
    for k in jax.random.split(inverse_key, 3):
        want, s, _ = _feedback_update(want, s, x, key=k, config=one, sigma=0.2,
                                      hyper=one.hyperparameters())
    for a, b in zip(jax.tree.leaves(eqx.filter(got, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(want, eqx.is_array))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(got.layers[1].feedback.weight, net.layers[1].feedback.weight)


@pytest.mark.parametrize("rule", dtp_eqx.FEEDBACK_RULES)
def test_each_rule_lowers_its_own_loss(rule):
    data = dtp_eqx.load_mnist()
    x, y = jnp.asarray(data.x_train[:1000]), jnp.asarray(data.y_train[:1000])
    net = dtp_eqx.DTPNetwork((784, 32, 32, 32, 10), key=jax.random.key(0))
    config = dtp_eqx.TrainConfig(feedback_rule=rule, optimizer="adam", lr_feedback=1e-3,
                                 sigma=0.1, batch_size=50)
    state = dtp_eqx.init_opt_state(net, config)
    trained, _, metrics = dtp_eqx.train_epoch(net, state, x, y, key=jax.random.key(1),
                                              config=config, phase="inverse")
    losses = np.asarray(metrics["recon_loss"]).sum(axis=1)
    assert losses[-5:].mean() < losses[:5].mean()
    # forward weights untouched by an inverse pass
    np.testing.assert_array_equal(trained.layers[2].forward.weight,
                                  net.layers[2].forward.weight)


def test_ldrl_aligns_the_feedback_with_the_forward_transpose_and_reconstruction_does_not():
    data = dtp_eqx.load_mnist()
    x, y = jnp.asarray(data.x_train[:2000]), jnp.asarray(data.y_train[:2000])
    start = dtp_eqx.DTPNetwork((784, 32, 32, 32, 10), key=jax.random.key(0))
    before = dtp_eqx.jacobian_alignment(start, x[:64])
    after = {}
    for rule in ("l-drl", "reconstruction"):
        config = dtp_eqx.TrainConfig(feedback_rule=rule, optimizer="adam",
                                     lr_feedback=3e-3, sigma=0.1, batch_size=50)
        net, state = start, dtp_eqx.init_opt_state(start, config)
        for epoch in range(3):
            net, state, _ = dtp_eqx.train_epoch(net, state, x, y,
                                                key=jax.random.key(epoch), config=config,
                                                phase="inverse")
        after[rule] = dtp_eqx.jacobian_alignment(net, x[:64])
    ldrl, recon = after["l-drl"], after["reconstruction"]
    assert np.all(ldrl["transpose_error"] < 0.5 * before["transpose_error"])
    assert np.all(ldrl["transpose_angle"] < 45)
    assert np.all(ldrl["transpose_angle"] < recon["transpose_angle"] - 10)


def test_jacobian_alignment_exact_by_hand_and_by_probes():
    net = linear_net()
    x = jax.random.normal(jax.random.key(1), (4, 3))
    exact = dtp_eqx.jacobian_alignment(net, x, probes=None)
    for i, k in ((1, 0), (2, 1)):
        w, v = net.layers[i].forward.weight, net.layers[i].feedback.weight
        np.testing.assert_allclose(exact["transpose_error"][k],
                                   jnp.linalg.norm(v - w.T) / jnp.linalg.norm(w), rtol=1e-5)
        np.testing.assert_allclose(exact["inverse_error"][k],
                                   jnp.linalg.norm(v @ w - jnp.eye(3)) / jnp.sqrt(3.0),
                                   rtol=1e-5)
        cos = jnp.sum(v * w.T) / (jnp.linalg.norm(v) * jnp.linalg.norm(w))
        np.testing.assert_allclose(exact["transpose_angle"][k],
                                   jnp.degrees(jnp.arccos(cos)), rtol=1e-4)
    probed = dtp_eqx.jacobian_alignment(net, x, probes=4000, key=jax.random.key(2))
    for name in exact:
        np.testing.assert_allclose(probed[name], exact[name], rtol=0.1)
    # an exact transpose gives zero error and zero angle
    tied = eqx.tree_at(lambda n: n.layers[1].feedback.weight, net, net.layers[1].forward.weight.T)
    aligned = dtp_eqx.jacobian_alignment(tied, x, probes=None)
    assert float(aligned["transpose_error"][0]) < 1e-6
    assert float(aligned["transpose_angle"][0]) < 0.1


def test_bad_feedback_settings_name_the_argument():
    with pytest.raises(ValueError, match="feedback_rule='gauss-newton'"):
        dtp_eqx.TrainConfig(feedback_rule="gauss-newton")
    with pytest.raises(ValueError, match="sigma=0 with feedback_rule='drl'"):
        dtp_eqx.TrainConfig(feedback_rule="drl", sigma=0.0)
    with pytest.raises(ValueError, match="feedback_iterations=0"):
        dtp_eqx.TrainConfig(feedback_iterations=0)
    with pytest.raises(ValueError, match="feedback_samples=True"):
        dtp_eqx.TrainConfig(feedback_samples=True)
    net = dtp_eqx.DTPNetwork((4, 3, 3, 2), activation="sigmoid", units="bernoulli",
                             key=jax.random.key(0))
    h = net.activations(jnp.ones(4), key=jax.random.key(1))
    with pytest.raises(ValueError, match="rule='l-drl' needs deterministic units"):
        dtp_eqx.feedback_losses(net, h, rule="l-drl", sigma=0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="probes=0"):
        dtp_eqx.jacobian_alignment(linear_net(), jnp.ones((2, 3)), probes=0)
