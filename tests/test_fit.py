import dataclasses
import equinox as eqx
import jax
import numpy as np
import pytest

import dtp_eqx
from helpers import toy_data, tree_allclose

SIZES = (8, 12, 12, 12, 3)


def _data(key):
    return toy_data(key, n=300, n_in=8, n_classes=3, n_valid=100, n_test=100)


def _make(key):
    return dtp_eqx.DTPNetwork(SIZES, key=key)


CONFIG = dtp_eqx.TrainConfig(epochs=3, batch_size=50, top_step=0.05)


def test_ensemble_matches_separate_runs(getkey):
    data = _data(getkey())
    init_keys = jax.random.split(getkey(), 3)
    train_keys = jax.random.split(getkey(), 3)
    ensemble = eqx.filter_vmap(_make)(init_keys)
    assert dtp_eqx.ensemble_size(ensemble) == 3
    trained, history = dtp_eqx.fit(ensemble, data, CONFIG, key=train_keys, progress=False)
    assert history["test_error"].shape == (3, 3)
    assert history["recon_error"].shape == (3, 3, 2)
    for i in range(3):
        single, single_history = dtp_eqx.fit(
            _make(init_keys[i]), data, CONFIG, key=train_keys[i], progress=False
        )
        member = jax.tree.map(lambda a: a[i] if eqx.is_array(a) else a, trained)
        assert tree_allclose(member, single, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(history["train_loss"][:, i], single_history["train_loss"], rtol=1e-4)
        np.testing.assert_allclose(history["test_error"][:, i], single_history["test_error"], atol=1e-6)


def test_one_member_ensemble_runs_the_single_program_with_the_same_result(getkey, monkeypatch):
    """A one-member ensemble takes the unvmapped program (faster on CPU); it must give
    what the vmapped program and a single run give, keeping the member axis."""
    from dtp_eqx import _epoch

    data = _data(getkey())
    x, y = jax.numpy.asarray(data.x_train), jax.numpy.asarray(data.y_train)
    init_key, key = getkey(), getkey()
    single = _make(init_key)
    one = eqx.filter_vmap(_make)(init_key[None])
    config = dataclasses.replace(CONFIG, schedule="per-batch")
    states = dtp_eqx.init_opt_state(one, config)
    hyper = {k: np.full(1, v, np.float32) for k, v in config.hyperparameters().items()
             if k != "sigma"}
    vmapped_program = _epoch._train_epoch_ensemble
    with monkeypatch.context() as patch:
        patch.setattr(_epoch, "_train_epoch_ensemble", None)  # calling it would fail
        model, state, metrics = dtp_eqx.train_epoch(
            one, states, x, y, key=key[None], config=config, phase="per-batch"
        )
    vmapped = vmapped_program(
        one, states, x, y, key[None], np.full(1, config.sigma, np.float32), hyper, config,
        "per-batch", None,
    )
    alone = dtp_eqx.train_epoch(single, dtp_eqx.init_opt_state(single, config), x, y,
                                key=key, config=config, phase="per-batch")
    assert dtp_eqx.ensemble_size(model) == 1
    assert metrics["loss"].shape == (1, x.shape[0] // config.batch_size)
    assert tree_allclose((model, state, metrics), vmapped, rtol=1e-4, atol=1e-6)
    assert tree_allclose(dtp_eqx.ensemble_member(model, 0), alone[0], rtol=1e-4, atol=1e-6)


def test_ensemble_needs_one_key_per_member(getkey):
    ensemble = eqx.filter_vmap(_make)(jax.random.split(getkey(), 2))
    with pytest.raises(ValueError, match=r"expected one key for a single model, or 2 keys"):
        dtp_eqx.fit(ensemble, _data(getkey()), CONFIG, key=getkey(), progress=False)
    with pytest.raises(ValueError, match="expected a single key"):
        dtp_eqx.fit(_make(getkey()), _data(getkey()), CONFIG, key=jax.random.split(getkey(), 2),
                    progress=False)


@pytest.mark.parametrize("ensemble", [False, True])
def test_interrupted_run_resumes_to_identical_parameters(ensemble, tmp_path, getkey):
    data = _data(getkey())
    config = dtp_eqx.TrainConfig(epochs=4, batch_size=50, top_step=0.05, sigma_tau=2.0)
    if ensemble:
        model = eqx.filter_vmap(_make)(jax.random.split(getkey(), 2))
        key = jax.random.split(getkey(), 2)
    else:
        model, key = _make(getkey()), getkey()
    full, full_history = dtp_eqx.fit(model, data, config, key=key, progress=False)

    class Killed(Exception):
        pass

    def kill_after_epoch_3(epoch, model, history):
        if epoch == 3:
            raise Killed

    path = tmp_path / "run.ckpt"
    with pytest.raises(Killed):
        dtp_eqx.fit(model, data, config, key=key, progress=False, checkpoint=path,
                    checkpoint_every=2, callback=kill_after_epoch_3)
    _, meta = dtp_eqx.load_checkpoint(path, (model, dtp_eqx.init_opt_state(model, config)))
    assert meta["epoch"] == 2  # saved every 2 epochs: epoch 3 was lost with the kill
    resumed, history = dtp_eqx.fit(model, data, config, key=key, progress=False,
                                   checkpoint=path, checkpoint_every=2, resume=True)
    assert eqx.tree_equal(resumed, full)  # bit for bit
    np.testing.assert_array_equal(history["test_error"], full_history["test_error"])
    _, meta = dtp_eqx.load_checkpoint(path, (model, dtp_eqx.init_opt_state(model, config)))
    assert meta["epoch"] == 4


def test_resume_refuses_another_runs_checkpoint(tmp_path, getkey):
    data, model = _data(getkey()), _make(getkey())
    path = tmp_path / "run.ckpt"
    dtp_eqx.fit(model, data, CONFIG, key=getkey(), progress=False, checkpoint=path)
    other = dtp_eqx.TrainConfig(epochs=3, batch_size=50, top_step=0.1)
    with pytest.raises(ValueError, match="comes from another run"):
        dtp_eqx.fit(model, data, other, key=getkey(), progress=False, checkpoint=path, resume=True)


def test_checkpoint_from_before_a_new_config_field_still_resumes(tmp_path, getkey):
    """A checkpoint written before `TrainConfig` gained a field (here: code_noise) resumes
    when the run keeps that field's default, and is refused when it does not."""
    data, model = _data(getkey()), _make(getkey())
    path = tmp_path / "run.ckpt"
    key = getkey()
    short = dataclasses.replace(CONFIG, epochs=1)
    dtp_eqx.fit(model, data, short, key=key, progress=False, checkpoint=path)
    (tree, meta) = dtp_eqx.load_checkpoint(path, (model, dtp_eqx.init_opt_state(model, short)))
    del meta["config"]["code_noise"]  # as an older version wrote it
    meta["history"]["train_loss"] = [123.0]  # a marker: a resumed run keeps epoch 1's row
    dtp_eqx.save_checkpoint(path, tree, meta)
    _, history = dtp_eqx.fit(model, data, dataclasses.replace(CONFIG, epochs=2), key=key,
                             progress=False, checkpoint=path, resume=True)
    assert history["train_loss"].tolist()[0] == 123.0 and len(history["train_loss"]) == 2
    dtp_eqx.save_checkpoint(path, tree, meta)
    with pytest.raises(ValueError, match="comes from another run"):
        dtp_eqx.fit(model, data, dataclasses.replace(CONFIG, epochs=2, code_noise=0.5), key=key,
                    progress=False, checkpoint=path, resume=True)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, getkey):
    data, model = _data(getkey()), _make(getkey())
    path = tmp_path / "run.ckpt"
    calm = dtp_eqx.TrainConfig(method="bp", optimizer="sgd", lr_forward=1e-3, epochs=1, batch_size=50)
    dtp_eqx.fit(model, data, calm, key=getkey(), progress=False, checkpoint=path)
    before = path.read_bytes()
    wild = dtp_eqx.TrainConfig(method="bp", optimizer="sgd", lr_forward=3e38, epochs=3, batch_size=50)
    # diverged in its first epoch: nothing saved, and the message names no checkpoint
    with pytest.raises(FloatingPointError, match="no checkpoint was saved"):
        dtp_eqx.fit(model, data, wild, key=getkey(), progress=False,
                    checkpoint=tmp_path / "wild.ckpt", checkpoint_every=1)
    assert not (tmp_path / "wild.ckpt").exists()
    # on the path of a good checkpoint, the blow-up leaves it as it was, and says so
    with pytest.raises(FloatingPointError, match=r"keeps the last saved epoch \(1\)"):
        dtp_eqx.fit(model, data, wild, key=getkey(), progress=False, checkpoint=path,
                    checkpoint_every=1)
    assert path.read_bytes() == before


def test_a_blow_up_without_nan_stops_the_run(tmp_path, getkey):
    """A finite loss far above its value before training, for two epochs, is a divergence;
    the blown-up epochs are never saved over the last good checkpoint."""
    data, model = _data(getkey()), _make(getkey())
    path = tmp_path / "run.ckpt"
    dtp_eqx.fit(model, data, CONFIG, key=getkey(), progress=False, checkpoint=path)
    before = path.read_bytes()
    wild = dataclasses.replace(CONFIG, epochs=6, lr_forward=1e3)
    with pytest.raises(FloatingPointError, match="more than 10 times its value before") as err:
        dtp_eqx.fit(model, data, wild, key=getkey(), progress=False, checkpoint=path,
                    checkpoint_every=1)
    assert "epoch 2:" in str(err.value) and "not finite" not in str(err.value)
    assert path.read_bytes() == before
    # a sweep (stop_on_divergence=False) trains on
    _, history = dtp_eqx.fit(model, data, dataclasses.replace(wild, epochs=2), key=getkey(),
                             progress=False, stop_on_divergence=False)
    assert history["train_loss"].shape == (2,)


def _saved_run(tmp_path, getkey, n_models=2, epochs=2):
    data = _data(getkey())
    ensemble = eqx.filter_vmap(_make)(jax.random.split(getkey(), n_models))
    path = tmp_path / "run.ckpt"
    config = dataclasses.replace(CONFIG, epochs=epochs)
    dtp_eqx.fit(ensemble, data, config, key=jax.random.split(getkey(), n_models),
                progress=False, checkpoint=path)
    return data, config, path


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "empty"])
def test_a_damaged_checkpoint_is_one_clear_error(damage, tmp_path, getkey):
    data, config, path = _saved_run(tmp_path, getkey)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-100] ^= 0x01  # one bit of one weight
    elif damage == "truncate":
        raw = raw[: len(raw) - 1000]
    elif damage == "header":
        raw = raw[:40] + b"}{" + raw[42:]
    else:
        raw = b""
    path.write_bytes(bytes(raw))
    ensemble = eqx.filter_vmap(_make)(jax.random.split(getkey(), 2))
    with pytest.raises(dtp_eqx.CheckpointError, match=str(path)):
        dtp_eqx.fit(ensemble, data, dataclasses.replace(config, epochs=3),
                    key=jax.random.split(getkey(), 2), progress=False, checkpoint=path,
                    resume=True)


def test_resuming_another_run_says_what_differs(tmp_path, getkey):
    data, config, path = _saved_run(tmp_path, getkey, n_models=2, epochs=3)
    three = eqx.filter_vmap(_make)(jax.random.split(getkey(), 3))
    with pytest.raises(dtp_eqx.CheckpointError, match="holds 2 seed.*pass --seeds 2"):
        dtp_eqx.fit(three, data, config, key=jax.random.split(getkey(), 3), progress=False,
                    checkpoint=path, resume=True)
    two = eqx.filter_vmap(_make)(jax.random.split(getkey(), 2))
    with pytest.raises(dtp_eqx.CheckpointError, match="has 3 epochs done.*--epochs 3"):
        dtp_eqx.fit(two, data, dataclasses.replace(config, epochs=2),
                    key=jax.random.split(getkey(), 2), progress=False, checkpoint=path,
                    resume=True)
    with pytest.raises(dtp_eqx.CheckpointError, match="started with top_step=0.05"):
        dtp_eqx.fit(two, data, dataclasses.replace(config, top_step=0.1),
                    key=jax.random.split(getkey(), 2), progress=False, checkpoint=path,
                    resume=True)
    # a network of other sizes, same settings: the shapes say it is another run
    other = eqx.filter_vmap(lambda k: dtp_eqx.DTPNetwork((8, 12, 12, 16, 3), key=k))(
        jax.random.split(getkey(), 2))
    with pytest.raises(dtp_eqx.CheckpointError, match="comes from another run"):
        dtp_eqx.fit(other, data, dataclasses.replace(config, epochs=4),
                    key=jax.random.split(getkey(), 2), progress=False, checkpoint=path,
                    resume=True)


def test_ctrl_c_saves_the_last_complete_epoch(tmp_path, getkey):
    data, model, key = _data(getkey()), _make(getkey()), getkey()
    path = tmp_path / "run.ckpt"
    config = dataclasses.replace(CONFIG, epochs=4)

    def stop(epoch, model, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(dtp_eqx.RunInterrupted) as err:
        dtp_eqx.fit(model, data, config, key=key, progress=False, checkpoint=path,
                    checkpoint_every=10, callback=stop)
    assert (err.value.epoch, err.value.checkpoint) == (2, path)
    assert dtp_eqx.checkpoint_meta(path)["epoch"] == 2
    resumed, history = dtp_eqx.fit(model, data, config, key=key, progress=False,
                                   checkpoint=path, resume=True)
    straight, straight_history = dtp_eqx.fit(model, data, config, key=key, progress=False)
    assert tree_allclose(resumed, straight)
    np.testing.assert_allclose(history["test_loss"], straight_history["test_loss"])


def test_eval_every_and_callback(getkey):
    seen = []
    _, history = dtp_eqx.fit(
        _make(getkey()), _data(getkey()), CONFIG, key=getkey(), progress=False, eval_every=2,
        callback=lambda epoch, model, history: seen.append((epoch, len(history["seconds"]))),
    )
    assert seen == [(1, 1), (2, 2), (3, 3)]
    assert np.isnan(history["test_error"][0])
    assert np.isfinite(history["test_error"][1:]).all()  # every 2nd epoch and the last
    with pytest.raises(ValueError, match="eval_every=0"):
        dtp_eqx.fit(_make(getkey()), _data(getkey()), CONFIG, key=getkey(), eval_every=0)


def test_checkpoint_file_errors(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a dtp_eqx checkpoint"):
        dtp_eqx.load_checkpoint(bad, None)


def test_raw_uint32_keys_are_accepted(getkey):
    _, history = dtp_eqx.fit(_make(getkey()), _data(getkey()), CONFIG, key=jax.random.PRNGKey(0),
                             progress=False)
    assert history["train_loss"].shape == (3,)


def test_ensemble_member(getkey):
    keys = jax.random.split(getkey(), 3)
    ensemble = eqx.filter_vmap(_make)(keys)
    assert tree_allclose(dtp_eqx.ensemble_member(ensemble, 1), _make(keys[1]))
    assert dtp_eqx.ensemble_size(dtp_eqx.ensemble_member(ensemble, -1)) is None
    with pytest.raises(IndexError, match="i=3"):
        dtp_eqx.ensemble_member(ensemble, 3)
    with pytest.raises(ValueError, match="not an ensemble"):
        dtp_eqx.ensemble_member(_make(keys[0]), 0)


def test_any_pytree_round_trips_but_fit_resumes_only_its_own(tmp_path, getkey):
    net = _make(getkey())
    path = dtp_eqx.save_checkpoint(tmp_path / "net.eqx", net, {"note": "any pytree"})
    loaded, meta = dtp_eqx.load_checkpoint(path, _make(getkey()))
    assert meta["note"] == "any pytree" and eqx.tree_equal(loaded, net)
    data = _data(getkey())
    with pytest.raises(dtp_eqx.CheckpointError, match="not written by fit"):
        dtp_eqx.fit(net, data, CONFIG, key=getkey(), progress=False, checkpoint=path,
                    resume=True)
