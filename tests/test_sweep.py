import dataclasses

import equinox as eqx
import jax
import numpy as np
import pytest

import dtp_eqx
from helpers import toy_data, tree_allclose

SIZES = (8, 12, 12, 12, 3)
CONFIG = dtp_eqx.TrainConfig(epochs=2, batch_size=50, top_step=0.05)


def _make(key):
    return dtp_eqx.DTPNetwork(SIZES, key=key)


def _data(key):
    return toy_data(key, n=300, n_in=8, n_classes=3, n_valid=100, n_test=100)


def test_per_member_settings_match_separate_runs(getkey):
    data = _data(getkey())
    init_keys, train_keys = jax.random.split(getkey(), 2), jax.random.split(getkey(), 2)
    hyper = {"top_step": [0.01, 0.2], "lr_forward": [1e-3, 3e-2],
             "lr_feedback": [2e-3, 1e-2], "sigma": [0.05, 0.5]}
    trained, history = dtp_eqx.fit(
        eqx.filter_vmap(_make)(init_keys), data, CONFIG, key=train_keys, hyper=hyper,
        progress=False,
    )
    for i in range(2):
        config = dataclasses.replace(CONFIG, **{k: v[i] for k, v in hyper.items()})
        single, single_history = dtp_eqx.fit(
            _make(init_keys[i]), data, config, key=train_keys[i], progress=False
        )
        member = jax.tree.map(lambda a: a[i] if eqx.is_array(a) else a, trained)
        assert tree_allclose(member, single, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            history["train_loss"][:, i], single_history["train_loss"], rtol=1e-4
        )
    # the two members really trained differently
    assert not np.allclose(history["train_loss"][:, 0], history["train_loss"][:, 1])


def test_hyper_is_checked(getkey):
    data = _data(getkey())
    ensemble = eqx.filter_vmap(_make)(jax.random.split(getkey(), 2))
    keys = jax.random.split(getkey(), 2)
    with pytest.raises(ValueError, match="unknown names \\['lr'\\]"):
        dtp_eqx.fit(ensemble, data, CONFIG, key=keys, hyper={"lr": [0.1, 0.1]}, progress=False)
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        dtp_eqx.fit(ensemble, data, CONFIG, key=keys, hyper={"top_step": [0.1] * 3},
                    progress=False)
    with pytest.raises(ValueError, match="must be positive"):
        dtp_eqx.fit(ensemble, data, CONFIG, key=keys, hyper={"lr_forward": [0.1, -1.0]},
                    progress=False)


def test_sample_hyperparameters(getkey):
    ranges = {"top_step": (1e-3, 1e-1), "sigma": (0.1, 0.1)}
    samples = dtp_eqx.sample_hyperparameters(500, ranges, key=getkey())
    assert set(samples) == {"top_step", "sigma"}
    assert samples["top_step"].shape == (500,)
    assert samples["top_step"].min() >= 1e-3 and samples["top_step"].max() <= 1e-1
    # log-uniform: about half the draws fall below the geometric middle 1e-2
    assert 0.4 < np.mean(samples["top_step"] < 1e-2) < 0.6
    np.testing.assert_allclose(samples["sigma"], 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="0 < low <= high"):
        dtp_eqx.sample_hyperparameters(3, {"sigma": (0.0, 1.0)}, key=getkey())
    with pytest.raises(ValueError, match="n_trials=0"):
        dtp_eqx.sample_hyperparameters(0, ranges, key=getkey())


def test_best_trial_skips_diverged_trials():
    loss = np.array([0.3, np.nan, 0.2, np.inf])
    valid = np.array([0.10, 0.01, 0.05, 0.0])
    assert dtp_eqx.best_trial(loss, valid) == 2
    with pytest.raises(ValueError, match="every trial diverged"):
        dtp_eqx.best_trial(np.full(2, np.nan), np.zeros(2))


def test_a_diverged_member_does_not_stop_the_others(getkey):
    data = _data(getkey())
    init_keys, train_keys = jax.random.split(getkey(), 2), jax.random.split(getkey(), 2)
    ensemble = eqx.filter_vmap(_make)(init_keys)
    weight = ensemble.output.weight
    broken = eqx.tree_at(lambda n: n.output.weight, ensemble, weight.at[1].set(np.nan))
    with pytest.raises(FloatingPointError, match="models \\[1\\]"):
        dtp_eqx.fit(broken, data, CONFIG, key=train_keys, progress=False)
    trained, history = dtp_eqx.fit(
        broken, data, CONFIG, key=train_keys, progress=False, stop_on_divergence=False
    )
    assert np.isnan(history["train_loss"][:, 1]).all()
    single, _ = dtp_eqx.fit(_make(init_keys[0]), data, CONFIG, key=train_keys[0], progress=False)
    member = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, trained)
    assert tree_allclose(member, single, rtol=1e-4, atol=1e-5)


def test_random_search_picks_the_lowest_validation_error(getkey):
    data = _data(getkey())
    result = dtp_eqx.random_search(
        _make, data, CONFIG, n_trials=4, key=getkey(), progress=False
    )
    assert result["valid_error"].shape == result["test_error"].shape == (4,)
    assert result["history"]["train_loss"].shape == (2, 4)
    # the default search: top step, both rates and sigma (code_noise is the auto-encoder's)
    assert set(result["hyper"]) == set(dtp_eqx.default_ranges(CONFIG))
    best = result["best"]
    assert result["valid_error"][best] == np.nanmin(result["valid_error"])
    for name, values in result["hyper"].items():
        assert result["best_hyper"][name] == pytest.approx(float(values[best]))
        low, high = dtp_eqx.default_ranges(CONFIG)[name]
        assert (values >= low * (1 - 1e-6)).all() and (values <= high * (1 + 1e-6)).all()
    assert dtp_eqx.ensemble_size(result["model"]) == 4
    with pytest.raises(ValueError, match="validation split"):
        dtp_eqx.random_search(_make, toy_data(getkey(), n=100), CONFIG, n_trials=2,
                              key=getkey(), progress=False)
