"""Convolutional DTP layers, the shape layers, and conv networks in the training pipeline."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_allclose

import dtp_eqx

IMAGE = (8, 8, 2)  # a tiny channels-last image: 128 values
# One configuration for every training test, so that they share compiled epochs.
CONFIG = dtp_eqx.TrainConfig(epochs=3, batch_size=32, schedule="per-batch",
                             inverse_warmup=0, optimizer="adam", sigma=0.1,
                             lr_forward=3e-3, lr_feedback=1e-3, top_step=0.1)


@eqx.filter_jit  # one compilation per setting, instead of one per initialising op
def tiny_net(key, *, hidden=(6,), pool="max"):
    """image (8, 8, 2) -> conv 2->3 (pool) -> conv 3->4 (pool) -> flatten 16 -> 6 -> 3."""
    return dtp_eqx.conv_network(IMAGE, 3, channels=(3, 4), hidden=hidden, pool=pool,
                                key=key)


def image_data(key, n=128, n_valid=64):
    """Flat random images with labels from the sign of two pixel sums (learnable)."""
    x = np.asarray(jax.random.uniform(key, (n + n_valid, int(np.prod(IMAGE)))))
    y = (x[:, :64].sum(1) > x[:, 64:].sum(1)).astype(np.int32) + (x[:, 0] > 0.5)
    return dtp_eqx.Dataset(x_train=x[:n], y_train=y[:n], x_valid=x[n:], y_valid=y[n:],
                           n_classes=3, image_shape=IMAGE)


@pytest.mark.parametrize("pool", dtp_eqx.POOLS)
def test_conv_layer_shapes(pool, getkey):
    layer = dtp_eqx.ConvDTPLayer((2, 8, 6), 5, pool=pool, kernel_size=3, key=getkey())
    out = (5, 4, 3) if pool else (5, 8, 6)
    assert layer.in_shape == (2, 8, 6) and layer.out_shape == out
    assert layer.in_features == 96 and layer.out_features == int(np.prod(out))
    h = layer(jax.random.normal(getkey(), (2, 8, 6)))
    assert h.shape == out
    assert layer.inverse(h).shape == (2, 8, 6)
    assert jax.vmap(layer)(jnp.zeros((7, 2, 8, 6))).shape == (7,) + out
    # zero biases, and the pooled activation of the convolution
    assert not jnp.any(layer.forward.bias) and not jnp.any(layer.feedback.bias)
    z = jnp.tanh(layer.forward(jnp.ones((2, 8, 6))))
    expected = {"max": z.reshape(5, 4, 2, 3, 2).max((2, 4)),
                "avg": z.reshape(5, 4, 2, 3, 2).mean((2, 4)), None: z}[pool]
    assert jnp.allclose(layer(jnp.ones((2, 8, 6))), expected, atol=1e-6)
    # g is the equinox transposed convolution of the upsampled h
    up = jnp.repeat(jnp.repeat(h, 2, 1), 2, 2) if pool else h
    assert jnp.allclose(layer.inverse(h), jnp.tanh(layer.feedback(up)), atol=1e-6)


def test_conv_gradients_match_equinox(getkey):
    """`conv_same`'s faster weight gradient is the gradient of `eqx.nn.Conv2d`."""
    layer = dtp_eqx.ConvDTPLayer((2, 6, 6), 3, kernel_size=5, key=getkey())
    x, t = jax.random.normal(getkey(), (2, 6, 6)), jax.random.normal(getkey(), (3, 3, 3))

    def ours(conv, x):
        return jnp.sum((eqx.tree_at(lambda l: l.forward, layer, conv)(x) - t) ** 2)

    def reference(conv, x):
        z = jnp.tanh(conv(x)).reshape(3, 3, 2, 3, 2).max((2, 4))
        return jnp.sum((z - t) ** 2)

    got = jax.grad(ours, argnums=(0, 1))(layer.forward, x)
    want = jax.grad(reference, argnums=(0, 1))(layer.forward, x)
    assert tree_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_unpooling_copies_each_value_into_its_block(pool, getkey):
    layer = dtp_eqx.ConvDTPLayer((1, 4, 4), 1, kernel_size=1, pool=pool,
                                 activation="identity", key=getkey())
    layer = eqx.tree_at(lambda l: l.feedback.weight, layer, jnp.ones((1, 1, 1, 1)))
    h = jnp.arange(4.0).reshape(1, 2, 2)
    assert jnp.array_equal(layer.inverse(h)[0], jnp.kron(h[0], jnp.ones((2, 2))))


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_transposed_conv_is_the_adjoint_of_the_conv(kernel_size, getkey):
    """<conv(x), y> = <conv_T(y), x> for linear units, no pooling, tied kernels."""
    layer = dtp_eqx.ConvDTPLayer((3, 7, 6), 4, kernel_size=kernel_size, pool=None,
                                 activation="identity", key=getkey())
    x = jax.random.normal(getkey(), (3, 7, 6))
    y = jax.random.normal(getkey(), (4, 7, 6))
    tied = layer.adjoint_feedback()
    assert jnp.allclose(jnp.vdot(tied(x), y), jnp.vdot(tied.inverse(y), x), rtol=1e-5)
    # the Jacobian of g is exactly the transpose of the Jacobian of f
    jf = jax.jacobian(tied)(x).reshape(4 * 42, 3 * 42)
    jg = jax.jacobian(tied.inverse)(y).reshape(3 * 42, 4 * 42)
    assert jnp.allclose(jg, jf.T, atol=1e-6)
    # and an untied feedback kernel is not (the check can fail)
    assert not jnp.allclose(jax.jacobian(layer.inverse)(y).reshape(3 * 42, 4 * 42), jf.T,
                            atol=1e-3)


def test_conv_layer_rejects_bad_settings(getkey):
    with pytest.raises(ValueError, match="kernel_size=4 must be odd"):
        dtp_eqx.ConvDTPLayer((1, 8, 8), 2, kernel_size=4, key=getkey())
    with pytest.raises(ValueError, match="must then be even"):
        dtp_eqx.ConvDTPLayer((1, 7, 8), 2, pool="max", key=getkey())
    with pytest.raises(ValueError, match="pool='min'"):
        dtp_eqx.ConvDTPLayer((1, 8, 8), 2, pool="min", key=getkey())
    with pytest.raises(ValueError, match="in_shape"):
        dtp_eqx.ConvDTPLayer((8, 8), 2, key=getkey())
    layer = dtp_eqx.ConvDTPLayer((1, 8, 8), 2, key=getkey())
    with pytest.raises(ValueError, match=r"h_prev has shape \(1, 6, 6\)"):
        layer(jnp.zeros((1, 6, 6)))


def test_glorot_and_orthogonal_kernels(getkey):
    layer = dtp_eqx.ConvDTPLayer((2, 4, 4), 3, init="orthogonal", key=getkey())
    w = layer.forward.weight.reshape(3, 18)
    assert jnp.allclose(w @ w.T, jnp.eye(3), atol=1e-5)  # orthonormal rows
    layer = dtp_eqx.ConvDTPLayer((2, 4, 4), 3, init="glorot", key=getkey())
    assert layer.feedback.weight.shape == (2, 3, 3, 3)
    assert jnp.abs(layer.forward.weight).max() <= np.sqrt(6 / (18 + 27))


def test_shape_layers_invert_exactly_and_are_channels_last():
    image = dtp_eqx.ImageLayer((4, 3, 2))
    assert image.in_shape == (24,) and image.out_shape == (2, 4, 3)
    x = jnp.arange(24.0)
    h = image(x)
    # pixel (row 1, column 2, channel 1) of the channels-last image
    assert h[1, 1, 2] == x.reshape(4, 3, 2)[1, 2, 1]
    assert jnp.array_equal(image.inverse(h), x)
    assert dtp_eqx.ImageLayer((28, 28)).out_shape == (1, 28, 28)
    flat = dtp_eqx.FlattenLayer((2, 4, 3))
    assert flat.out_shape == (24,) and jnp.array_equal(flat.inverse(flat(h)), h)
    assert jax.tree.leaves(eqx.filter((image, flat), eqx.is_array)) == []


def test_network_shapes_and_labels(getkey):
    net = tiny_net(getkey())
    assert net.shapes == ((128,), (2, 8, 8), (3, 4, 4), (4, 2, 2), (16,), (6,), (3,))
    assert net.sizes == (128, 128, 48, 16, 16, 6, 3)
    assert net.in_features == 128 and net.n_classes == 3
    hs = net.activations(jnp.zeros(128))
    assert tuple(h.shape for h in hs) == net.shapes
    labels = dtp_eqx.param_labels(net)
    image, conv1, conv2, flat, dense = labels.layers
    assert jax.tree.leaves((image, flat)) == []  # parameter-free layers: no labels
    # nothing below the first convolution learns, so its feedback is frozen
    assert set(jax.tree.leaves(conv1.forward)) == {"forward"}
    assert set(jax.tree.leaves(conv1.feedback)) == {"frozen"}
    assert set(jax.tree.leaves(conv2.feedback)) == {"feedback"}
    assert set(jax.tree.leaves(dense.feedback)) == {"feedback"}
    with pytest.raises(ValueError, match=r"expected one example of shape \(128,\)"):
        net.activations(jnp.zeros(127))
    # the dense network's labels are unchanged: layer 1's feedback frozen, the rest trained
    dense_net = dtp_eqx.DTPNetwork((5, 4, 4, 2), key=getkey())
    dense_labels = dtp_eqx.param_labels(dense_net).layers
    assert set(jax.tree.leaves(dense_labels[0].feedback)) == {"frozen"}
    assert set(jax.tree.leaves(dense_labels[1].feedback)) == {"feedback"}
    assert dense_net.shapes == ((5,), (4,), (4,), (2,))


def test_from_layers_checks_shapes(getkey):
    conv = dtp_eqx.ConvDTPLayer((2, 8, 8), 3, key=getkey())
    with pytest.raises(ValueError, match=r"layers\[1\] \(ConvDTPLayer\) reads inputs of "
                       r"shape \(2, 8, 8\), but layers\[0\] \(ImageLayer\) outputs shape "
                       r"\(3, 8, 8\); expected layers\[1\].in_shape == \(3, 8, 8\)"):
        dtp_eqx.DTPNetwork.from_layers([dtp_eqx.ImageLayer((8, 8, 3)), conv], 3,
                                       key=getkey())
    with pytest.raises(ValueError, match=r"outputs shape \(3, 4, 4\).*FlattenLayer"):
        dtp_eqx.DTPNetwork.from_layers([dtp_eqx.ImageLayer((8, 8, 2)), conv], 3,
                                       key=getkey())
    with pytest.raises(ValueError, match="layers is empty"):
        dtp_eqx.DTPNetwork.from_layers([], 3, key=getkey())
    with pytest.raises(TypeError, match="layers"):  # ours, or the type checker's
        dtp_eqx.DTPNetwork.from_layers([eqx.nn.Linear(2, 2, key=getkey())], 3, key=getkey())
    with pytest.raises(ValueError, match="n_classes=0"):
        dtp_eqx.DTPNetwork.from_layers([dtp_eqx.DTPLayer(2, 2, key=getkey())], 0,
                                       key=getkey())


def test_from_layers_of_dense_layers_matches_sizes():
    """The same layers and output key give the same network as the `sizes` constructor."""
    net = dtp_eqx.DTPNetwork((5, 4, 3, 2), key=jax.random.key(0))
    *layer_keys, output_key = jax.random.split(jax.random.key(0), 3)
    layers = [dtp_eqx.DTPLayer(5, 4, key=layer_keys[0]), dtp_eqx.DTPLayer(4, 3, key=layer_keys[1])]
    built = dtp_eqx.DTPNetwork.from_layers(layers, 2, key=output_key)
    assert tree_allclose(built, net, rtol=0, atol=0)
    moved = eqx.tree_at(lambda n: n.output.bias, built, jnp.ones(2))
    assert isinstance(moved, dtp_eqx.DTPNetwork) and moved.output.bias[0] == 1


@pytest.mark.parametrize("pool", ["max", None])
def test_targets_through_the_conv_net(pool, getkey):
    net = tiny_net(getkey(), pool=pool)
    x = jax.random.uniform(getkey(), (128,))
    hs = net.activations(x)
    ts = dtp_eqx.compute_targets(net, hs, 1, top_step=0.5)
    assert tuple(t.shape for t in ts) == net.shapes[1:-1]
    assert not jnp.allclose(ts[1], hs[2])  # a real step reaches the convolutions
    # a zero step gives targets on the activations, through every kind of layer
    ts = dtp_eqx.compute_targets(net, hs, 1, top_step=0.0)
    for t, h in zip(ts, hs[1:-1]):
        assert jnp.allclose(t, h, atol=1e-6)


def test_diagnostics_of_the_conv_net(getkey):
    net = tiny_net(getkey())
    data = image_data(getkey(), n=32, n_valid=0)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    angles = dtp_eqx.angles_to_backprop(net, x, y, top_step=0.1)
    weight = np.asarray(angles["weight"])
    assert weight.shape == (5,)
    # parameter-free layers (image, flatten) have no weights: NaN
    assert np.isnan(weight[[0, 3]]).all() and np.isfinite(weight[[1, 2, 4]]).all()
    assert np.isfinite(np.asarray(angles["activation"])).all()
    recon = np.asarray(dtp_eqx.reconstruction_errors(net, x))
    assert recon.shape == (4,) and recon[2] < 1e-10  # the flatten layer inverts exactly
    assert recon[0] > 0 and recon[1] > 0 and recon[3] > 0


def _changed(a, b):
    return [bool(jnp.any(p != q)) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b))]


@pytest.mark.parametrize("phase", ["inverse", "forward"])
def test_each_phase_moves_only_its_parameter_group(phase, getkey):
    net = tiny_net(getkey())
    data = image_data(getkey(), n=128, n_valid=0)
    config = CONFIG
    opt_state = dtp_eqx.init_opt_state(net, config)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    new, _, _ = dtp_eqx.train_epoch(net, opt_state, x, y,
                                    key=getkey(), config=config, phase=phase, sigma=0.1)
    labels = dtp_eqx.param_labels(net)
    params = eqx.filter(net, eqx.is_array)
    changed = _changed(params, eqx.filter(new, eqx.is_array))
    names = jax.tree.leaves(labels)
    assert len(names) == len(changed) == 14
    want = "feedback" if phase == "inverse" else "forward"
    assert all(c == (n == want) for c, n in zip(changed, names)), list(zip(names, changed))


@pytest.mark.parametrize("method", ["dtp", "bp"])
def test_fit_lowers_the_loss_and_round_trips_a_checkpoint(method, getkey, tmp_path):
    net = tiny_net(getkey())
    data = image_data(getkey())
    config = dataclasses.replace(CONFIG, method=method)
    before = dtp_eqx.evaluate(net, data.x_train, data.y_train)["loss"]
    path = tmp_path / "conv.ckpt"
    trained, history = dtp_eqx.fit(net, data, config, key=getkey(), progress=False,
                                   checkpoint=path)
    assert history["train_loss"].shape == (3,)
    assert history["recon_error"].shape == (3, 4)
    assert dtp_eqx.evaluate(trained, data.x_train, data.y_train)["loss"] < before
    opt_state = dtp_eqx.init_opt_state(net, config)
    (loaded, _), meta = dtp_eqx.load_checkpoint(path, (net, opt_state))
    assert meta["epoch"] == 3
    assert tree_allclose(loaded, trained, rtol=0, atol=0)


def test_ensemble_of_two_conv_nets(getkey):
    nets = eqx.filter_vmap(lambda k: tiny_net(k))(jax.random.split(getkey(), 2))
    assert dtp_eqx.ensemble_size(nets) == 2
    assert nets.layers[1].forward.weight.shape == (2, 3, 2, 3, 3)
    data = image_data(getkey(), n=128, n_valid=0)
    # back-prop: the same vmapped convolutions, at a fifth of DTP's compile time (the
    # DTP ensemble runs the same code as the dense one, tests/test_fit.py)
    config = dataclasses.replace(CONFIG, method="bp")
    trained, history = dtp_eqx.fit(nets, data, config, key=jax.random.split(getkey(), 2),
                                   progress=False)
    assert history["train_loss"].shape == (3, 2)
    assert history["recon_error"].shape == (3, 2, 4)
    assert np.isfinite(history["train_loss"]).all()
    member = dtp_eqx.ensemble_member(trained, 1)
    assert member.shapes == tiny_net(getkey()).shapes


@pytest.mark.parametrize("rule", dtp_eqx.FEEDBACK_RULES)
def test_every_feedback_rule_lowers_its_loss_on_the_conv_net(rule, getkey):
    """One inverse epoch of each feedback rule on the conv net lowers that rule's loss
    (measured on the same batch with the same noise before and after)."""
    net = tiny_net(getkey())
    data = image_data(getkey(), n=128, n_valid=0)
    config = dataclasses.replace(CONFIG, feedback_rule=rule)
    xb, key = jnp.asarray(data.x_train), getkey()

    @eqx.filter_jit
    def loss(n):
        return dtp_eqx.inverse_loss(n, xb, sigma=0.1, key=key, rule=rule)[0]

    opt_state = dtp_eqx.init_opt_state(net, config)
    trained, _, _ = dtp_eqx.train_epoch(net, opt_state, jnp.asarray(data.x_train),
                                        jnp.asarray(data.y_train),
                                        key=getkey(), config=config, phase="inverse",
                                        sigma=0.1)
    assert loss(trained) < loss(net)


def test_jacobian_alignment_of_conv_layers(getkey):
    """Tied (adjoint) linear convolutions have J_g = J_f^T exactly; untied ones do not;
    Gaussian probes estimate the exact norms."""
    layers = [dtp_eqx.ImageLayer(IMAGE)]
    for c in (3, 4):
        layers.append(dtp_eqx.ConvDTPLayer(layers[-1].out_shape, c, pool=None,
                                           activation="identity", key=getkey()))
    layers.append(dtp_eqx.FlattenLayer(layers[-1].out_shape))
    untied = dtp_eqx.DTPNetwork.from_layers(layers, 3, key=getkey())
    tied = eqx.tree_at(lambda n: n.layers[1:3], untied,
                       tuple(layer.adjoint_feedback() for layer in untied.layers[1:3]))
    x = jax.random.uniform(getkey(), (4, 128))
    exact = dtp_eqx.jacobian_alignment(tied, x, probes=None)
    assert exact["transpose_error"].shape == (3,)  # conv 1, conv 2, flatten
    assert np.allclose(exact["transpose_error"], 0, atol=1e-5)
    assert np.allclose(exact["transpose_angle"], 0, atol=0.1)
    assert np.allclose(exact["inverse_error"][2], 0, atol=1e-6)  # flatten inverts exactly
    far = dtp_eqx.jacobian_alignment(untied, x, probes=None)
    assert (np.asarray(far["transpose_error"][:2]) > 0.5).all()
    estimate = dtp_eqx.jacobian_alignment(untied, x, probes=256, key=getkey())
    assert np.allclose(estimate["transpose_error"], far["transpose_error"], rtol=0.15)
