import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dtp_eqx
from helpers import toy_data, tree_allclose


def _params(tree):
    return eqx.filter(tree, eqx.is_array)


def test_original_rmsprop_matches_the_paper_formula(getkey):
    lr = 0.01
    opt = dtp_eqx.original_rmsprop(lr)
    theta = np.asarray(jax.random.normal(getkey(), (5,)), np.float64)
    params = jnp.asarray(theta, jnp.float32)
    state = opt.init(params)
    a = s = v = np.zeros(5)
    for _ in range(6):
        g = np.asarray(jax.random.normal(getkey(), (5,)), np.float64)
        a = 0.95 * a + 0.05 * g
        s = 0.95 * s + 0.05 * g**2
        v = 0.9 * v - lr * g / np.sqrt(s - a**2 + 1e-3)
        theta = theta + v
        updates, state = opt.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params), theta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", dtp_eqx.OPTIMIZERS)
def test_make_optimizer(name):
    opt = dtp_eqx.make_optimizer(name, 0.1)
    params = jnp.ones(3)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam is not strict-promotion clean
        updates, _ = opt.update(jnp.ones(3), opt.init(params), params)
    assert jnp.all(updates < 0)


@pytest.mark.parametrize(
    "name, lr, match",
    [("lbfgs", 0.1, "optimizer='lbfgs'"), ("adam", -1.0, "learning_rate=-1.0"),
     ("sgd", 0.0, "learning_rate=0.0")],
)
def test_make_optimizer_errors(name, lr, match):
    with pytest.raises(ValueError, match=match):
        dtp_eqx.make_optimizer(name, lr)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "feedback-alignment"}, "method='feedback-alignment'"),
        ({"schedule": "per-epoch"}, "schedule='per-epoch'"),
        ({"optimizer": "adagrad"}, "optimizer='adagrad'"),
        ({"epochs": 0}, "epochs=0"),
        ({"batch_size": -5}, "batch_size=-5"),
        ({"lr_forward": -0.1}, "lr_forward=-0.1"),
        ({"lr_feedback": float("nan")}, "lr_feedback=nan"),
        ({"top_step": 0.0}, "top_step=0.0"),
        ({"sigma": -0.3}, "sigma=-0.3"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dtp_eqx.TrainConfig(**kwargs)


def test_config_phases():
    assert dtp_eqx.TrainConfig().phases() == ("inverse", "forward")
    assert dtp_eqx.TrainConfig().phases(0) == ("inverse", "forward")
    per_batch = dtp_eqx.TrainConfig(schedule="per-batch")
    assert per_batch.phases() == per_batch.phases(1) == ("per-batch",)
    assert per_batch.phases(0) == ("inverse", "per-batch")  # the inverse warm-up
    no_warmup = dtp_eqx.TrainConfig(schedule="per-batch", inverse_warmup=0)
    assert no_warmup.phases(0) == ("per-batch",)
    assert dtp_eqx.TrainConfig(method="bp", schedule="per-batch").phases(0) == ("bp",)


@pytest.mark.parametrize("bad", [-1, True])
def test_inverse_warmup_must_be_a_count(bad):
    with pytest.raises(ValueError, match=f"inverse_warmup={bad!r}"):
        dtp_eqx.TrainConfig(schedule="per-batch", inverse_warmup=bad)


def test_param_labels(getkey):
    net = dtp_eqx.DTPNetwork((8, 6, 6, 6, 3), key=getkey())
    labels = dtp_eqx.param_labels(net)
    assert jax.tree.structure(labels) == jax.tree.structure(net)
    assert labels.layers[0].feedback.weight == "frozen"
    assert labels.layers[1].feedback.weight == "feedback"
    assert labels.layers[2].forward.bias == "forward"
    assert labels.output.weight == "forward"
    assert sorted(set(jax.tree.leaves(labels))) == ["feedback", "forward", "frozen"]


def _net_and_data(key, sizes=(8, 16, 16, 16, 3)):
    knet, kdata = jax.random.split(key)
    net = dtp_eqx.DTPNetwork(sizes, key=knet)
    data = toy_data(kdata, n=600, n_in=sizes[0], n_classes=sizes[-1], n_valid=200, n_test=200)
    return net, data


def _device_xy(net, data):
    return dtp_eqx._train.check_arrays(net, data.x_train, data.y_train, "train")


def test_inverse_epochs_lower_reconstruction_error_and_keep_forward(getkey):
    net, data = _net_and_data(getkey())
    config = dtp_eqx.TrainConfig(batch_size=50, lr_feedback=0.01)
    x, y = _device_xy(net, data)
    state = dtp_eqx.init_opt_state(net, config)
    before = dtp_eqx.reconstruction_errors(net, x)
    trained, key = net, getkey()
    for _ in range(5):
        key, sub = jax.random.split(key)
        trained, state, metrics = dtp_eqx.train_epoch(
            trained, state, x, y, key=sub, config=config, phase="inverse"
        )
    after = dtp_eqx.reconstruction_errors(trained, x)
    assert before.shape == after.shape == (3 - 1,)
    assert jnp.all(after < 0.5 * before)
    assert metrics["recon_loss"].shape == (600 // 50, 2)
    fwd = lambda m: [l.forward for l in m.layers] + [m.output]  # noqa: E731
    assert eqx.tree_equal(fwd(trained), fwd(net))
    assert eqx.tree_equal(trained.layers[0].feedback, net.layers[0].feedback)


@pytest.mark.parametrize("phase", ["forward", "bp"])
def test_forward_phases_keep_feedback(phase, getkey):
    net, data = _net_and_data(getkey())
    config = dtp_eqx.TrainConfig(batch_size=50, method="bp" if phase == "bp" else "dtp")
    x, y = _device_xy(net, data)
    trained, _, metrics = dtp_eqx.train_epoch(
        net, dtp_eqx.init_opt_state(net, config), x, y, key=getkey(), config=config, phase=phase
    )
    assert metrics["loss"].shape == metrics["error"].shape == (12,)
    assert eqx.tree_equal([l.feedback for l in trained.layers], [l.feedback for l in net.layers])
    assert not eqx.tree_equal(trained.output, net.output)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "dtp"},
        {"method": "dtp", "schedule": "per-batch"},
        {"method": "bp", "lr_forward": 1e-3},
        {"method": "dtp", "optimizer": "adam", "lr_forward": 1e-3, "lr_feedback": 1e-3},
    ],
)
def test_fit_lowers_the_loss(kwargs, getkey):
    net, data = _net_and_data(getkey())
    config = dtp_eqx.TrainConfig(epochs=4, batch_size=20, top_step=0.05, **kwargs)
    trained, history = dtp_eqx.fit(net, data, config, key=getkey(), progress=False)
    assert history["train_loss"].shape == history["test_error"].shape == (4,)
    assert history["recon_error"].shape == history["recon_loss"].shape == (4, 2)
    assert np.isnan(history["recon_loss"]).all() == (config.method == "bp")
    assert np.all(history["seconds"] > 0)
    assert history["train_loss"][-1] < 0.95 * history["train_loss"][0]
    before = dtp_eqx.evaluate(net, *_device_xy(net, data))
    after = dtp_eqx.evaluate(trained, *_device_xy(net, data))
    assert after["loss"] < before["loss"]


def test_fit_by_plain_target_propagation_runs(getkey):
    # Vanilla TP is not expected to learn this toy task in a few epochs (its targets
    # carry the untrained inverses' errors); check that it trains every forward layer.
    net, data = _net_and_data(getkey())
    config = dtp_eqx.TrainConfig(method="tp", epochs=1, batch_size=20, top_step=0.05)
    trained, history = dtp_eqx.fit(net, data, config, key=getkey(), progress=False)
    assert np.isfinite(history["train_loss"]).all()
    for a, b in zip(trained.layers, net.layers):
        assert not eqx.tree_equal(a.forward, b.forward)


def test_fit_without_validation_or_test(getkey):
    net, data = _net_and_data(getkey())
    data = dtp_eqx.Dataset(x_train=data.x_train, y_train=data.y_train, n_classes=3)
    config = dtp_eqx.TrainConfig(epochs=1, batch_size=50)
    _, history = dtp_eqx.fit(net, data, config, key=getkey(), progress=False)
    assert np.isnan(history["valid_error"]).all() and np.isnan(history["test_error"]).all()
    assert np.isfinite(history["recon_error"]).all()


def test_same_seed_same_bits_after_an_epoch(getkey):
    net, data = _net_and_data(getkey())
    config = dtp_eqx.TrainConfig(epochs=1, batch_size=50)
    key = getkey()
    a, _ = dtp_eqx.fit(net, data, config, key=key, progress=False)
    b, _ = dtp_eqx.fit(net, data, config, key=key, progress=False)
    c, _ = dtp_eqx.fit(net, data, config, key=getkey(), progress=False)
    assert eqx.tree_equal(a, b)  # exact equality: no tolerance given
    assert not eqx.tree_equal(a, c)


def test_evaluate(getkey):
    net, data = _net_and_data(getkey())
    x, y = _device_xy(net, data)
    result = dtp_eqx.evaluate(net, x, y, batch_size=256)  # ragged last chunk
    logits = jax.vmap(net)(x)
    assert result["error"] == pytest.approx(float(jnp.mean(jnp.argmax(logits, -1) != y)))
    ce = jax.vmap(dtp_eqx.cross_entropy)(logits, y)
    assert result["loss"] == pytest.approx(float(jnp.mean(ce)), rel=1e-5)


def _bad(data, **changes):
    import dataclasses

    return dataclasses.replace(data, **changes)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: _bad(d, x_train=d.x_train[:, :5]), r"train inputs have shape \(600, 5\); the model expects \(n, 8\)"),
        (lambda d: _bad(d, y_train=d.y_train + 3), r"train labels range over \[3, 5\].*\[0, 2\]"),
        (lambda d: _bad(d, y_train=d.y_train.astype(np.float32)), "train labels have shape"),
        (lambda d: _bad(d, x_test=np.where(np.arange(8) == 2, np.nan, d.x_test)), "test inputs contain 200 NaN"),
        (lambda d: _bad(d, x_train=d.x_train[:10], y_train=d.y_train[:10]), "fewer than batch_size=100"),
    ],
)
def test_fit_bad_data(change, match, getkey):
    net, data = _net_and_data(getkey())
    with pytest.raises(ValueError, match=match):
        dtp_eqx.fit(net, change(data), dtp_eqx.TrainConfig(epochs=1), key=getkey(), progress=False)


def test_train_epoch_errors(getkey):
    net, data = _net_and_data(getkey())
    x, y = _device_xy(net, data)
    config = dtp_eqx.TrainConfig(batch_size=50)
    state = dtp_eqx.init_opt_state(net, config)
    with pytest.raises(ValueError, match="phase='both'"):
        dtp_eqx.train_epoch(net, state, x, y, key=getkey(), config=config, phase="both")
    with pytest.raises(ValueError, match="sigma=-1.0"):
        dtp_eqx.train_epoch(net, state, x, y, key=getkey(), config=config, phase="inverse", sigma=-1.0)


def test_divergence_stops_with_a_clear_error(getkey):
    net, data = _net_and_data(getkey())
    config = dtp_eqx.TrainConfig(method="bp", optimizer="sgd", lr_forward=3e38, epochs=3, batch_size=20)
    with pytest.raises(FloatingPointError, match="diverged in epoch"):
        dtp_eqx.fit(net, data, config, key=getkey(), progress=False)


@pytest.fixture(scope="module")
def mnist_trained(data_dir):
    """784-240-240-240-10 tanh trained by DTP for 2 epochs with the original settings."""
    data = dtp_eqx.load_mnist(data_dir, download=False)
    net = dtp_eqx.DTPNetwork((784, 240, 240, 240, 10), key=jax.random.key(0))
    config = dtp_eqx.TrainConfig(epochs=2)
    net, history = dtp_eqx.fit(net, data, config, key=jax.random.key(1), progress=False)
    return net, history, data, config


def test_dtp_learns_mnist_in_two_epochs(mnist_trained):
    _, history, _, _ = mnist_trained
    print("test error after 2 epochs:", history["test_error"])
    assert history["test_error"][-1] < 0.08
    assert history["recon_error"][-1].max() < history["recon_error"][0].max() * 1.5


def test_dtp_update_is_a_descent_direction_on_mnist(mnist_trained):
    net, _, data, config = mnist_trained
    x, y = jnp.asarray(data.x_train[:100]), jnp.asarray(data.y_train[:100])
    angles = dtp_eqx.angles_to_backprop(net, x, y, top_step=config.top_step)
    print("angles to back-prop (degrees):", angles)
    assert angles["weight"].shape == (3,)
    assert jnp.all(angles["weight"] < 90)
    assert jnp.all(angles["activation"] < 90)


def test_per_batch_schedule_learns_mnist_with_the_paper_settings(data_dir):
    """The paper's Algorithm 1 (inverse then forward update on every minibatch) with the
    deep tanh settings. Without the inverse warm-up, 2 of these 3 seeds saturate at chance
    in the first epoch (training loss about 9-12, validation error 90%)."""
    data = dtp_eqx.load_mnist(data_dir, download=False)
    config = dtp_eqx.paper_config("mnist-deep", "dtp", schedule="per-batch", epochs=1)
    nets = eqx.filter_vmap(lambda k: dtp_eqx.paper_network("mnist-deep", key=k))(
        jnp.stack([jax.random.key(s) for s in range(3)])
    )
    keys = jnp.stack([jax.random.key(10 + s) for s in range(3)])
    _, history = dtp_eqx.fit(nets, data, config, key=keys, progress=False)
    print("per-batch, 1 epoch: train loss", history["train_loss"][-1],
          "valid error", history["valid_error"][-1])
    assert np.all(history["valid_error"][-1] < 0.15)
    assert np.all(history["train_loss"][-1] < 1.0)


# Discrete and stochastic networks.


def _sign_net_and_data(key):
    knet, kdata = jax.random.split(key)
    net = dtp_eqx.DTPNetwork((8, 16, 16, 3), units="sign", key=knet)
    return net, toy_data(kdata, n=400, n_in=8, n_classes=3, n_valid=100, n_test=100)


@pytest.mark.parametrize(
    "method, layer1_learns", [("bp", False), ("dtp", True), ("ste", True), ("bp-continuous", True)]
)
def test_who_trains_layer_1_below_a_sign(method, layer1_learns, getkey):
    """Back-prop through sign gives layer 1 a zero gradient; DTP and STE train it."""
    net, data = _sign_net_and_data(getkey())
    config = dtp_eqx.TrainConfig(method=method, epochs=1, batch_size=20, top_step=0.3, lr_forward=1e-3)
    trained, history = dtp_eqx.fit(net, data, config, key=getkey(), progress=False)
    assert bool(eqx.tree_equal(trained.layers[0].forward, net.layers[0].forward)) != layer1_learns
    assert not eqx.tree_equal(trained.layers[1].forward, net.layers[1].forward)
    # evaluation always uses the true sign
    assert [l.sign_mode for l in trained.layers[1:]] == ["sign"]


def test_backprop_gradient_of_layer_1_is_zero_through_sign(getkey):
    net, data = _sign_net_and_data(getkey())
    x, y = jnp.asarray(data.x_train[:20]), jnp.asarray(data.y_train[:20])
    grads = {
        method: eqx.filter_grad(
            lambda n: dtp_eqx.forward_loss(n, x, y, config=dtp_eqx.TrainConfig(method=method), key=getkey())[0]
        )(net)
        for method in ("bp", "ste")
    }
    assert jnp.all(grads["bp"].layers[0].forward.weight == 0)
    assert jnp.any(grads["ste"].layers[0].forward.weight != 0)


def _bernoulli_net_and_data(key):
    knet, kdata = jax.random.split(key)
    net = dtp_eqx.DTPNetwork((8, 16, 16, 3), activation="sigmoid", units="bernoulli", init="glorot", key=knet)
    return net, toy_data(kdata, n=400, n_in=8, n_classes=3, n_valid=100, n_test=100)


@pytest.mark.parametrize("method", ["dtp", "ste"])
def test_stochastic_network_trains(method, getkey):
    net, data = _bernoulli_net_and_data(getkey())
    config = dtp_eqx.TrainConfig(method=method, epochs=3, batch_size=20, top_step=0.5,
                                 lr_forward=3e-3, input_noise=0.1, n_samples=5)
    trained, history = dtp_eqx.fit(net, data, config, key=getkey(), progress=False)
    assert np.isfinite(history["test_error"]).all()
    assert np.isfinite(history["recon_error"]).all() and history["recon_error"].shape == (3, 1)
    for a, b in zip(trained.layers, net.layers):
        assert not eqx.tree_equal(a.forward, b.forward)


def test_stochastic_evaluation_averages_samples(getkey):
    net, data = _bernoulli_net_and_data(getkey())
    x, y = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    with pytest.raises(ValueError, match="needs key"):
        dtp_eqx.evaluate(net, x, y)
    with pytest.raises(ValueError, match="n_samples=0"):
        dtp_eqx.evaluate(net, x, y, key=getkey(), n_samples=0)
    key = getkey()
    one = dtp_eqx.evaluate(net, x, y, key=key, n_samples=1)
    logits = jax.vmap(lambda xi, k: net(xi, key=k))(x, jax.random.split(jax.random.split(key, 1)[0], 100))
    assert one["error"] == pytest.approx(float(jnp.mean(jnp.argmax(logits, -1) != y)))
    many = dtp_eqx.evaluate(net, x, y, key=key, n_samples=50)
    assert many["loss"] <= one["loss"] + 1e-6  # averaging probabilities is never worse in log-loss here
    # the mean-field network needs no key
    assert np.isfinite(dtp_eqx.evaluate(eqx.nn.inference_mode(net), x, y)["loss"])


def test_noise_schedule():
    config = dtp_eqx.TrainConfig(sigma=0.5, sigma_tau=50.0)
    assert config.sigma_at(0) == 0.5
    assert config.sigma_at(50) == pytest.approx(0.25)
    assert dtp_eqx.TrainConfig(sigma=0.3).sigma_at(99) == 0.3
    # counting epochs from 1, as the original discrete code: epoch 49 (from 0) is its 50th
    from_one = dtp_eqx.TrainConfig(sigma=0.5, sigma_tau=50.0, anneal_from=1)
    assert from_one.sigma_at(49) == pytest.approx(0.25)
    assert from_one.sigma_at(0) < 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [({"sigma_tau": 0.0}, "sigma_tau=0.0"), ({"sigma_tau": -3.0}, "sigma_tau=-3.0"),
     ({"n_samples": 0}, "n_samples=0"), ({"input_noise": -0.1}, "input_noise=-0.1"),
     ({"anneal_from": -1}, "anneal_from=-1")],
)
def test_config_errors_for_units(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dtp_eqx.TrainConfig(**kwargs)


# Real MNIST: the paper's discrete and stochastic networks learn in two epochs. The
# paper trains them for 500 and 1000 epochs; after 2 epochs on the 50,000 training
# images (1,000 updates of each kind) DTP measured 10-11% (discrete) and 13% (stochastic)
# test error on two seeds here, against 90% for chance. The thresholds leave a margin
# for other seeds and machines while still failing for a network that does not learn.


@pytest.fixture(scope="module")
def mnist(data_dir):
    return dtp_eqx.load_mnist(data_dir, download=False).take(None, 1000, 2000)


@pytest.mark.parametrize("experiment, threshold", [("discrete", 0.15), ("stochastic", 0.20)])
def test_paper_networks_learn_mnist_by_dtp(experiment, threshold, mnist):
    net = dtp_eqx.paper_network(experiment, key=jax.random.key(0))
    config = dtp_eqx.paper_config(experiment, "dtp", epochs=2, n_samples=20)
    _, history = dtp_eqx.fit(net, mnist, config, key=jax.random.key(1), progress=False)
    print(experiment, "test error after 2 epochs:", history["test_error"])
    assert history["test_error"][-1] < threshold


def test_data_parallel_over_eight_devices_matches_one_device():
    """`fit(..., mesh=data_mesh())` on 8 (forced) CPU devices: same parameters and
    curves as one device, and the compiled epoch reduces gradients across devices. Runs
    in a fresh process because the device count is fixed when JAX starts."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    proc = subprocess.run(
        [sys.executable, str(tests / "sharded_fit.py")], cwd=tests, capture_output=True,
        text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "continuous: sharded run matches one device" in proc.stdout
    assert "bernoulli: sharded run matches one device" in proc.stdout


def test_mesh_and_batch_size_are_checked(getkey):
    net = dtp_eqx.DTPNetwork((8, 6, 6, 3), key=getkey())
    data = toy_data(getkey(), n=120)
    mesh = jax.sharding.Mesh(
        np.asarray(jax.devices()[:1]), ("data",), axis_types=(jax.sharding.AxisType.Explicit,)
    )
    config = dtp_eqx.TrainConfig(epochs=1, batch_size=60)
    with pytest.raises(ValueError, match="type Auto"):
        dtp_eqx.fit(net, data, config, key=getkey(), mesh=mesh, progress=False)
    # one device: any batch size splits; the run matches the plain one
    plain, _ = dtp_eqx.fit(net, data, config, key=jax.random.key(5), progress=False)
    meshed, _ = dtp_eqx.fit(net, data, config, key=jax.random.key(5), progress=False,
                            mesh=dtp_eqx.data_mesh(jax.devices()[:1]))
    assert tree_allclose(plain, meshed)


# Input, label and argument checks of fit and evaluate (issue 14, points 6 and 8).


def test_integer_inputs_are_rejected(getkey):
    net, data = _net_and_data(getkey())
    pixels = (255 * data.x_train).astype(np.uint8)
    with pytest.raises(ValueError, match=r"data.x_train \(the train inputs\) has dtype "
                                         r"uint8.*x.astype\(np.float32\) / 255"):
        dtp_eqx.fit(net, _bad(data, x_train=pixels), dtp_eqx.TrainConfig(epochs=1),
                    key=getkey(), progress=False)
    with pytest.raises(ValueError, match=r"x has dtype uint8.*/ 255"):
        dtp_eqx.evaluate(net, pixels, data.y_train)


def test_inputs_that_look_like_pixels_warn(getkey):
    net, data = _net_and_data(getkey())
    big = 255 * data.x_train
    with pytest.warns(UserWarning, match=r"data.x_train \(the train inputs\) ranges over "
                                         r"\[.*, 25\d.*\], like 0-255 pixels.*x / 255"):
        dtp_eqx.fit(net, _bad(data, x_train=big), dtp_eqx.TrainConfig(epochs=1, batch_size=100),
                    key=getkey(), progress=False)
    with pytest.warns(UserWarning, match=r"x ranges over .*x / 255"):
        dtp_eqx.evaluate(net, big, data.y_train)
    # signed (e.g. Gaussian) inputs, however large, are not pixels: no warning (the
    # test configuration turns warnings into errors)
    gaussian = 5 * np.asarray(jax.random.normal(getkey(), data.x_train.shape))
    dtp_eqx.evaluate(net, gaussian, data.y_train)


@pytest.mark.parametrize(
    "labels, match",
    [
        (lambda y: y + 1, r"labels y range over \[1, 3\]; the network has 3 classes, so "
                          r"labels must lie in \[0, 2\]"),
        (lambda y: y - 1, r"labels y range over \[-1, 1\]"),
        (lambda y: y.astype(np.float32), r"labels y have shape \(600,\) and dtype float32; "
                                         r"expected integers"),
        (lambda y: None, r"y is None, but a classifier needs integer labels"),
    ],
)
def test_evaluate_checks_labels(labels, match, getkey):
    net, data = _net_and_data(getkey(), sizes=(8, 6, 6, 3))
    y = labels(data.y_train)
    with pytest.raises(ValueError, match=match):
        dtp_eqx.evaluate(net, jnp.asarray(data.x_train), None if y is None else jnp.asarray(y))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(x=jnp.zeros((0, 8))), r"x is empty \(shape \(0, 8\)\): evaluate needs "
                                               r"at least one example"),
        (dict(batch_size=0), "batch_size=0 must be a positive integer"),
        (dict(batch_size=-100), "batch_size=-100 must be a positive integer"),
        (dict(batch_size=True), "batch_size=True must be a positive integer"),
    ],
)
def test_evaluate_checks_empty_inputs_and_batch_size(change, match, getkey):
    net, data = _net_and_data(getkey(), sizes=(8, 6, 6, 3))
    args = {"x": jnp.asarray(data.x_train), "y": jnp.asarray(data.y_train), **change}
    args["y"] = args["y"][: len(args["x"])]
    with pytest.raises(ValueError, match=match):
        dtp_eqx.evaluate(net, args.pop("x"), args.pop("y"), **args)


def test_numpy_scalars_are_accepted_as_numbers(getkey):
    import dataclasses
    import json

    config = dtp_eqx.TrainConfig(lr_forward=np.float32(0.01), lr_feedback=np.float64(0.005),
                                 sigma=np.float32(0.25), batch_size=np.int64(50),
                                 epochs=np.int64(1), n_samples=np.int32(3),
                                 sigma_tau=np.float32(10))
    assert type(config.batch_size) is int and type(config.lr_forward) is float
    assert config.lr_forward == pytest.approx(0.01)
    json.dumps(dataclasses.asdict(config))  # results files can record it
    assert dtp_eqx.paper_config("mnist-deep", epochs=np.int64(3),
                                lr_forward=np.float32(1e-3)).epochs == 3
    dtp_eqx.make_optimizer("adam", np.float32(1e-3))
    assert dtp_eqx.top_step_from_eta(np.float32(0.5), np.int64(100)) == pytest.approx(0.005)
    net, data = _net_and_data(getkey(), sizes=(8, 6, 6, 3))
    _, history = dtp_eqx.fit(net, data, config, key=getkey(), progress=False)
    assert history["train_loss"].shape == (1,)
    assert np.isfinite(dtp_eqx.evaluate(net, data.x_test, data.y_test,
                                        batch_size=np.int64(64))["loss"])
    with pytest.raises(ValueError, match="epochs=True must be a positive integer"):
        dtp_eqx.TrainConfig(epochs=True)  # a bool is still not an integer


def test_an_integer_key_is_a_clear_error():
    # fit, train_epoch and evaluate turn `key` into a typed key with as_key (their
    # annotations make the test suite's jaxtyping hook stop key=0 earlier; callers
    # without that hook get this message)
    match = r"key=0 is not a JAX random key; pass one made by jax.random.key, e.g. " \
            r"key=jax.random.key\(0\)"
    with pytest.raises(TypeError, match=match):
        dtp_eqx.as_key(0)
    with pytest.raises(TypeError, match=match):
        dtp_eqx.sample_hyperparameters(2, {"sigma": (0.1, 1.0)}, key=0)
    with pytest.raises(TypeError, match=r"key \(dtype float32, shape \(2,\)\) is not a JAX"):
        dtp_eqx.as_key(np.zeros(2, np.float32))
    # typed keys and legacy raw uint32 keys still work
    assert dtp_eqx.as_key(jax.random.PRNGKey(0)).shape == ()
    assert dtp_eqx.as_key(jax.random.split(jax.random.key(0), 3)).shape == (3,)


@pytest.mark.parametrize("name", ["sigma", "input_noise", "code_noise"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_config_noise_must_be_finite(name, value):
    with pytest.raises(ValueError, match=rf"{name}={value!r} must be a finite non-negative number"):
        dtp_eqx.TrainConfig(**{name: value})


def test_train_inverses_trains_only_the_feedback(getkey):
    net = dtp_eqx.DTPNetwork((8, 6, 6, 6, 3), key=getkey())
    x = jax.random.normal(getkey(), (50, 8))
    config = dtp_eqx.TrainConfig(batch_size=10, lr_feedback=1e-2, sigma=0.1)
    seen = []
    trained = dtp_eqx.train_inverses(net, x, config=config, updates=12, key=getkey(),
                                     progress=seen.append)
    assert seen == [5 / 12, 10 / 12, 1.0]  # two whole passes of 5 batches, then 2 batches
    for before, after in zip(net.layers, trained.layers):
        np.testing.assert_array_equal(before.forward.weight, after.forward.weight)
    np.testing.assert_array_equal(net.output.weight, trained.output.weight)
    assert not np.allclose(net.layers[1].feedback.weight, trained.layers[1].feedback.weight)
    errors = dtp_eqx.reconstruction_errors(net, x)
    assert jnp.all(dtp_eqx.reconstruction_errors(trained, x) < errors)
    assert dtp_eqx.train_inverses(net, x, config=config, updates=0, key=getkey()) is net
    with pytest.raises(ValueError, match="updates"):
        dtp_eqx.train_inverses(net, x, config=config, updates=-1, key=getkey())
    with pytest.raises(ValueError, match="batch_size"):
        dtp_eqx.train_inverses(net, x[:5], config=config, updates=1, key=getkey())
