import jax
import pytest

import dtp_eqx


def test_networks(getkey):
    deep = dtp_eqx.paper_network("mnist-deep", key=getkey())
    assert deep.sizes == (784,) + (240,) * 7 + (10,)
    discrete = dtp_eqx.paper_network("discrete", key=getkey())
    assert [type(l).__name__ for l in discrete.layers] == ["DTPLayer", "DiscreteDTPLayer"]
    stochastic = dtp_eqx.paper_network("stochastic", key=getkey())
    assert stochastic.sizes == (784, 200, 200, 10) and stochastic.stochastic
    # the original code's feedback mapping is tanh(V h + c) on sigmoid units
    assert [(l.activation, l.feedback_activation) for l in stochastic.layers] == [
        ("sigmoid", "tanh")] * 2


def test_configs():
    deep = dtp_eqx.paper_config("mnist-deep")
    assert deep == dtp_eqx.TrainConfig()  # the defaults are the deep tanh DTP settings
    assert dtp_eqx.paper_config("mnist-deep", "bp").lr_forward == 8.04437e-4
    discrete = dtp_eqx.paper_config("discrete", "dtp")
    assert discrete.top_step == pytest.approx(0.279655)
    # disc_dtp.py counts the epochs of its anneal from 1 and never shuffles
    assert discrete.sigma_at(0) == pytest.approx(0.5 / (1 + 1 / 50))
    assert discrete.sigma_at(49) == pytest.approx(0.25)
    assert not discrete.shuffle
    # each back-prop baseline has its own rate in the original code (disc_bp1/2.py)
    rates = {m: dtp_eqx.paper_config("discrete", m).lr_forward for m in ("bp", "bp-continuous")}
    assert rates == {"bp": 2.54965e-3, "bp-continuous": 3.24965e-3}
    assert not dtp_eqx.paper_config("discrete", "ste").shuffle
    stochastic = dtp_eqx.paper_config("stochastic", "ste", epochs=5)
    assert (stochastic.method, stochastic.lr_forward, stochastic.epochs) == ("ste", 4.58495e-3, 5)
    assert stochastic.input_noise == 0.3 and stochastic.n_samples == 100


def test_unknown_experiment():
    with pytest.raises(ValueError, match="experiment='imagenet'"):
        dtp_eqx.paper_config("imagenet")
    with pytest.raises(ValueError, match="experiment='imagenet'"):
        dtp_eqx.paper_network("imagenet", key=jax.random.key(0))


def test_feedback_rule_brings_its_settings_which_overrides_replace():
    ldrl = dtp_eqx.paper_config("mnist-deep", feedback_rule="l-drl")
    assert (ldrl.schedule, ldrl.sigma, ldrl.feedback_samples) == ("per-batch", 0.1, 10)
    assert ldrl.lr_forward == dtp_eqx.paper_config("mnist-deep").lr_forward
    drl = dtp_eqx.paper_config("mnist-deep", feedback_rule="drl", sigma=0.2)
    assert (drl.sigma, drl.lr_feedback, drl.schedule) == (0.2, 1e-3, "per-batch")
    # the 2015 rule, and back-prop, keep the original settings
    assert dtp_eqx.paper_config("mnist-deep", feedback_rule="reconstruction") == \
        dtp_eqx.paper_config("mnist-deep")
    assert dtp_eqx.paper_config("mnist-deep", "bp", feedback_rule="l-drl").schedule == \
        "alternate-epoch"
    # the settings' text names what a run changed of the rule's settings
    from dtp_eqx._paper import feedback_rule_settings
    assert "this run" not in feedback_rule_settings(ldrl)
    one = dtp_eqx.paper_config("mnist-deep", feedback_rule="l-drl", feedback_samples=1)
    assert feedback_rule_settings(one).endswith("(this run: feedback_samples=1)")
    assert feedback_rule_settings(dtp_eqx.paper_config("mnist-deep")) == ""


def test_cnn_experiment(getkey):
    net = dtp_eqx.paper_network("cifar10-cnn", key=getkey())
    assert net.shapes == ((3072,), (3, 32, 32), (16, 16, 16), (32, 8, 8), (2048,), (10,))
    assert [type(l).__name__ for l in net.layers] == [
        "ImageLayer", "ConvDTPLayer", "ConvDTPLayer", "FlattenLayer"]
    wide = dtp_eqx.paper_network("cifar10-cnn", key=getkey(), channels=(4, 8, 8))
    assert wide.shapes[-2] == (8 * 4 * 4,)
    # every method on Adam, minibatches of 128, per-batch DTP without warm-up
    for method in ("bp", "dtp"):
        config = dtp_eqx.paper_config("cifar10-cnn", method)
        assert (config.optimizer, config.lr_forward, config.batch_size) == ("adam", 1e-3, 128)
    dtp = dtp_eqx.paper_config("cifar10-cnn", "dtp")
    assert (dtp.schedule, dtp.inverse_warmup, dtp.top_step, dtp.sigma) == (
        "per-batch", 0, 0.1, 0.1)
    assert dtp_eqx.paper_experiment("cifar10-cnn")["paper"] == {}
