"""The reproduction command: quick runs of every experiment, resuming, bad flags, report."""

import json
import os
import subprocess
import sys

import pytest

import dtp_eqx
from dtp_eqx.__main__ import main


def _results(path):
    result = json.loads(path.read_text())
    for key in ("config", "seeds", "final", "curves", "provenance", "wall_seconds"):
        assert key in result
    for key in ("commit", "date", "device", "jax", "finished"):
        assert key in result["provenance"]
    assert set(result["final"]["test_error"]) == {"mean", "std", "per_seed"}
    return result


@pytest.mark.parametrize("experiment", dtp_eqx.PAPER_EXPERIMENTS)
def test_quick_mode_of_every_experiment(experiment, data_dir, tmp_path):
    if experiment == "cifar10" and not (data_dir / "cifar10_jpeg_q75_bytes.npz").is_file():
        pytest.skip(f"real-data test: {data_dir} holds no CIFAR-10 copy")
    out = tmp_path / f"{experiment}.json"
    assert main(["reproduce", experiment, "--quick", "--seeds", "2", "--out", str(out),
                 "--data-dir", str(data_dir), "--no-progress"]) == 0
    result = _results(out)
    assert result["quick"] and result["epochs"] == 1 and result["seeds"]["n"] == 2
    assert result["command"].startswith(f"python -m dtp_eqx reproduce {experiment} --quick")
    assert result["eval_every"] == 1
    # the network is recorded as paper_network builds it
    network = dtp_eqx.paper_experiment(experiment)["network"]
    assert result["network"] == json.loads(json.dumps(network))
    assert len(result["final"]["test_error"]["per_seed"]) == 2
    assert out.with_suffix(".ckpt").exists()
    if experiment == "cifar10":
        assert result["lossy_data"] and "JPEG" in result["data_name"]
    if experiment == "autoencoder":
        # features judged three ways; the settings' origin recorded
        assert set(result["probes"]) == {"pixels", "untrained", "trained"}
        assert set(result["finetune"]) == {"bp", "dtp", "bp-from-scratch"}
        chosen = result["finetune"][result["chosen_finetune"]]
        assert result["final"]["test_error"] == chosen["test_error"]
        best = result["search"]["best"]
        assert result["config"]["sigma"] == pytest.approx(best["sigma"])
        assert result["config"]["code_noise"] == pytest.approx(best["code_noise"])
        assert result["paper_epochs"] is None


def test_module_entry_point(data_dir, tmp_path):
    """The documented command, in a fresh interpreter."""
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dtp_eqx", "reproduce", "mnist-deep", "--method", "dtp", "--quick",
         "--seeds", "1", "--out", str(out), "--data-dir", str(data_dir), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mnist-deep dtp: test error" in proc.stdout
    assert _results(out)["method"] == "dtp"


def test_resume_extends_a_run_to_the_same_result(data_dir, tmp_path):
    common = ["reproduce", "mnist-deep", "--method", "bp", "--quick", "--seeds", "2",
              "--data-dir", str(data_dir), "--no-progress", "--checkpoint-every", "1"]
    straight, resumed = tmp_path / "straight.json", tmp_path / "resumed.json"
    assert main(common + ["--epochs", "3", "--out", str(straight)]) == 0
    assert main(common + ["--epochs", "2", "--out", str(resumed)]) == 0
    assert main(common + ["--epochs", "3", "--out", str(resumed), "--resume"]) == 0
    a, b = _results(straight), _results(resumed)
    assert a["curves"]["test_loss"] == b["curves"]["test_loss"]
    assert a["final"] == b["final"]
    # provenance: the first start's command and date, then where the run was resumed
    assert a["resumed"] == [] and "--resume" not in b["command"]
    assert [r["epoch"] for r in b["resumed"]] == [2]
    assert "--resume" in b["resumed"][0]["command"]
    assert b["provenance"]["date"] <= b["resumed"][0]["date"] <= b["provenance"]["finished"]
    assert b["train_seconds"] == pytest.approx(sum(b["curves"]["seconds"]))
    # wall time counts both stretches, so it covers the training time of all 3 epochs
    assert b["wall_seconds"] >= b["train_seconds"]


def test_search_then_reproduce_with_its_settings(data_dir, tmp_path, capsys):
    found = tmp_path / "search.json"
    assert main(["search", "mnist-deep-relu", "--quick", "--feedback-activation", "tanh",
                 "--range", "lr_forward=1e-4:1e-3", "--range", "top_step=1e-3:1e-2",
                 "--out", str(found), "--data-dir", str(data_dir), "--no-progress"]) == 0
    search = json.loads(found.read_text())
    assert search["n_trials"] == len(search["trials"]) == 2
    assert search["ranges"] == {"lr_forward": [1e-4, 1e-3], "top_step": [1e-3, 1e-2]}
    for trial in search["trials"]:
        assert 1e-4 <= trial["lr_forward"] <= 1e-3 and 1e-3 <= trial["top_step"] <= 1e-2
    best = search["trials"][search["best"]]
    assert best["valid_error"] == min(t["valid_error"] for t in search["trials"])
    assert search["network"] == {"feedback_activation": "tanh"}
    assert "best of 2 trials" in capsys.readouterr().out
    out = tmp_path / "run.json"
    assert main(["reproduce", "mnist-deep-relu", "--quick", "--seeds", "1", "--settings",
                 str(found), "--lr-feedback", "0.002", "--out", str(out),
                 "--data-dir", str(data_dir), "--no-progress"]) == 0
    run = _results(out)
    assert run["config"]["lr_forward"] == pytest.approx(best["lr_forward"])
    assert run["config"]["top_step"] == pytest.approx(best["top_step"])
    assert run["config"]["lr_feedback"] == 0.002  # a flag given still wins
    assert run["network"]["feedback_activation"] == "tanh"
    assert run["settings_search"]["file"] == str(found)
    # a search made for another experiment is refused, naming both
    assert main(["reproduce", "mnist-deep", "--quick", "--settings", str(found),
                 "--out", str(tmp_path / "x.json"), "--data-dir", str(data_dir)]) == 2
    assert "is a search for 'mnist-deep-relu'" in capsys.readouterr().err


def test_untied_autoencoder_without_search(data_dir, tmp_path):
    out = tmp_path / "ae.json"
    assert main(["reproduce", "autoencoder", "--quick", "--seeds", "1", "--untied", "--no-search",
                 "--code-noise", "0.2", "--out", str(out), "--data-dir", str(data_dir),
                 "--no-progress"]) == 0
    result = _results(out)
    assert result["network"]["tied"] is False and result["search"] is None
    assert result["config"]["code_noise"] == 0.2
    # the report shows how the features were judged
    out.write_text(json.dumps({**result, "quick": False}))
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    for line in ("| raw pixels | linear probe |", "| DTP-trained encoder | fine-tuning by dtp",
                 "| random init | fine-tuning by bp |"):
        assert line in readme
    assert "| autoencoder | dtp |" in readme and "(not given)" in readme


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "imagenet"], "invalid choice: 'imagenet'"),
        (["reproduce", "mnist-deep", "--method", "adam"], "invalid choice: 'adam'"),
        (["reproduce", "mnist-deep", "--epochs", "0"], "0 is not positive"),
        (["reproduce", "mnist-deep", "--epochs", "-3"], "-3 is not positive"),
        (["reproduce", "mnist-deep", "--seeds", "many"], "'many' is not an integer"),
        (["reproduce", "mnist-deep", "--sigma", "-1"], "-1.0 is negative"),
        (["reproduce", "mnist-deep", "--sigma", "nan"], "'nan' is not a finite number"),
        (["reproduce", "mnist-deep", "--sigma", "inf"], "'inf' is not a finite number"),
        (["reproduce", "mnist-deep", "--lr-forward", "inf"], "'inf' is not a finite number"),
        (["reproduce", "mnist-deep", "--resume", "--overwrite"], "not allowed with argument"),
        (["search", "mnist-deep", "--range", "eta=1:2"], "'eta' is not a searchable setting"),
        (["search", "mnist-deep", "--range", "sigma=0:1"], "needs 0 < LOW <= HIGH"),
    ],
)
def test_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--untied"], ["--code-noise", "0.1"], ["--no-search"]])
def test_autoencoder_flags_elsewhere(flags, capsys):
    assert main(["reproduce", "discrete", *flags]) == 2
    assert f"{flags[0]} applies to the autoencoder experiment only" in capsys.readouterr().err


def test_method_that_does_not_apply(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["reproduce", "mnist-deep", "--method", "ste", "--out", str(out)]) == 2
    assert "does not apply to mnist-deep" in capsys.readouterr().err
    assert not out.exists()


def test_missing_data_directory_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["reproduce", "mnist-deep", "--quick", "--out", str(out),
                 "--data-dir", str(tmp_path / "no-such-folder")])
    assert code == 2
    assert "is not a directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["reproduce", "mnist-deep", "--quick", "--out", str(out), "--data-dir", str(empty)])
    assert code == 2
    assert "No MNIST data found" in capsys.readouterr().err
    assert not out.exists()


def test_per_batch_runs_have_their_own_search_results_and_row(data_dir, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default outputs go under tmp_path/results/quick
    assert main(["search", "mnist-deep", "--quick", "--schedule", "per-batch",
                 "--data-dir", str(data_dir), "--no-progress"]) == 0
    found = tmp_path / "results" / "quick" / "search" / "mnist-deep-dtp-per-batch.json"
    assert json.loads(found.read_text())["config"]["schedule"] == "per-batch"
    # the settings carry their schedule; the run is named by it
    assert main(["reproduce", "mnist-deep", "--quick", "--seeds", "1", "--settings",
                 str(found), "--data-dir", str(data_dir), "--no-progress"]) == 0
    out = tmp_path / "results" / "quick" / "mnist-deep-dtp-per-batch.json"
    run = _results(out)
    assert run["config"]["schedule"] == "per-batch" and run["config"]["inverse_warmup"] == 1
    # settings searched on one schedule are refused for the other
    assert main(["reproduce", "mnist-deep", "--quick", "--settings", str(found),
                 "--schedule", "alternate-epoch", "--out", str(tmp_path / "x.json"),
                 "--data-dir", str(data_dir)]) == 2
    assert "searched with the 'per-batch' schedule" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    # load_results keeps both schedules of one method apart
    results = tmp_path / "full"
    results.mkdir()
    for name, schedule in (("mnist-deep-dtp", "alternate-epoch"),
                           ("mnist-deep-dtp-per-batch", "per-batch")):
        (results / f"{name}.json").write_text(json.dumps(
            {**run, "quick": False, "config": {**run["config"], "schedule": schedule}}))
    assert sorted(dtp_eqx.load_results(results)) == [("mnist-deep", "dtp"),
                                                      ("mnist-deep", "dtp-per-batch")]


def test_report(data_dir, tmp_path):
    results = tmp_path / "results"
    for method in ("dtp", "bp"):
        out = results / f"mnist-deep-{method}.json"
        assert main(["reproduce", "mnist-deep", "--method", method, "--quick", "--seeds", "1",
                     "--out", str(out), "--data-dir", str(data_dir), "--no-progress"]) == 0
        result = json.loads(out.read_text())
        result["quick"] = False  # report leaves quick runs out; pretend these are real
        out.write_text(json.dumps(result))
    (results / "mnist-deep-tp.json").write_text(json.dumps({**result, "quick": True}))
    (results / "notes").mkdir()
    (results / "notes" / "mnist-deep.md").write_text("What was tried: a marker 7731.\n")
    assert main(["report", "--results-dir", str(results)]) == 0
    readme = (results / "README.md").read_text()
    # a hand-written note lands under its experiment's figure
    assert readme.index("![mnist-deep]") < readme.index("What was tried: a marker 7731.")
    rows = [line for line in readme.splitlines() if line.startswith("| mnist-deep |")]
    assert [row.split("|")[2].strip() for row in rows] == ["bp", "dtp"]
    # one evaluated epoch, so the best validation epoch is epoch 1, at the final error
    for row, method in zip(rows, ("bp", "dtp")):
        final = json.loads((results / f"mnist-deep-{method}.json").read_text())["final"]
        assert row.split("|")[4].strip() == f"{100 * final['test_error']['mean']:.2f}% (epoch 1)"
    assert "1.94%" in readme and "1.86%" in readme  # the paper's numbers
    # a one-epoch run misses the paper by more than its spread, and the row says so; the
    # notes file is there, so no request for one
    assert all("misses the paper by" in row for row in rows)
    assert "nothing is recorded yet" not in readme
    (results / "notes" / "mnist-deep.md").unlink()
    assert main(["report", "--results-dir", str(results)]) == 0
    assert "nothing is recorded yet about what was tried" in (results / "README.md").read_text()
    assert (results / "mnist-deep.png").stat().st_size > 1000


def test_load_results_skips_quick_runs(tmp_path):
    import json

    import dtp_eqx

    for name, quick in (("mnist-deep-dtp", False), ("mnist-deep-bp", True)):
        experiment, method = name.rsplit("-", 1)
        (tmp_path / f"{name}.json").write_text(
            json.dumps({"experiment": experiment, "method": method, "quick": quick})
        )
    runs = dtp_eqx.load_results(tmp_path)
    assert list(runs) == [("mnist-deep", "dtp")]
    with pytest.raises(FileNotFoundError, match="results_dir="):
        dtp_eqx.load_results(tmp_path / "missing")


def _quick(out, data_dir, *flags):
    return ["reproduce", "mnist-deep", "--method", "bp", "--quick", "--seeds", "1",
            "--out", str(out), "--data-dir", str(data_dir), "--no-progress", *flags]


def test_a_second_run_never_replaces_the_first(data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(_quick(out, data_dir, "--epochs", "2")) == 0
    results, checkpoint = out.read_bytes(), out.with_suffix(".ckpt").read_bytes()
    capsys.readouterr()
    # the same command again: stops before training, says how to go on, changes nothing
    assert main(_quick(out, data_dir, "--epochs", "2")) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--overwrite" in err
    assert out.read_bytes() == results and out.with_suffix(".ckpt").read_bytes() == checkpoint
    # --overwrite replaces it; resuming a run whose checkpoint is gone is refused
    assert main(_quick(out, data_dir, "--epochs", "1", "--overwrite")) == 0
    assert json.loads(out.read_text())["epochs"] == 1
    out.with_suffix(".ckpt").unlink()
    before = out.read_bytes()
    assert main(_quick(out, data_dir, "--epochs", "2", "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_run_on_a_locked_output_stops_at_once(data_dir, tmp_path, capsys):
    from dtp_eqx._outputs import output_lock

    out = tmp_path / "r.json"
    with output_lock(out, command="python -m dtp_eqx reproduce (the first run)"):
        assert main(_quick(out, data_dir)) == 2
        err = capsys.readouterr().err
        assert "another run is writing" in err and "(the first run)" in err
        assert f"process {os.getpid()}" in err
    assert not out.exists() and not out.with_name("r.json.lock").exists()
    assert main(_quick(out, data_dir)) == 0  # released: the run goes ahead


@pytest.mark.parametrize("case", ["folder", "same-as-checkpoint", "unwritable"])
def test_bad_outputs_are_refused_before_training(case, tmp_path, capsys):
    empty = tmp_path / "no-data"  # no dataset here: the run must stop before loading
    empty.mkdir()
    if case == "folder":
        out, message = tmp_path / "a-folder", "is a folder"
        out.mkdir()
    elif case == "same-as-checkpoint":
        out, message = tmp_path / "run.ckpt", "would be the same file"
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        out, message = blocker / "r.json", "cannot be written"
    assert main(_quick(out, empty)) == 2
    err = capsys.readouterr().err
    assert message in err and "No MNIST data" not in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_errors_are_one_line(data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(_quick(out, data_dir, "--epochs", "1")) == 0
    checkpoint = out.with_suffix(".ckpt")
    raw = bytearray(checkpoint.read_bytes())
    raw[-50] ^= 0x10
    checkpoint.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(_quick(out, data_dir, "--epochs", "2", "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and "damaged" in err and str(checkpoint) in err
    assert len(err.strip().splitlines()) == 1
    # a dataset file that is not a zip archive
    bad = tmp_path / "bad-data"
    bad.mkdir()
    (bad / "mnist.npz").write_bytes(b"not a zip file")
    assert main(_quick(tmp_path / "s.json", bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_ctrl_c_prints_the_resume_command(data_dir, tmp_path, capsys, monkeypatch):
    import dtp_eqx._reproduce as reproduce_module

    real_fit = reproduce_module.fit

    def interrupted_fit(*args, **kwargs):
        def stop(epoch, model, history):
            raise KeyboardInterrupt

        return real_fit(*args, **kwargs, callback=stop)

    monkeypatch.setattr(reproduce_module, "fit", interrupted_fit)
    out = tmp_path / "r.json"
    assert main(_quick(out, data_dir, "--epochs", "3", "--checkpoint-every", "5")) == 130
    err = capsys.readouterr().err
    assert f"epoch 1 is saved in {out.with_suffix('.ckpt')}" in err
    assert err.strip().endswith("--no-progress --epochs 3 --checkpoint-every 5 --resume")
    assert "Traceback" not in err
    monkeypatch.setattr(reproduce_module, "fit", real_fit)
    assert main(_quick(out, data_dir, "--epochs", "3", "--checkpoint-every", "5",
                       "--resume")) == 0
    assert json.loads(out.read_text())["resumed"][0]["epoch"] == 1


def _fake_run(method, test, *, search=None, command=None, epochs=100):
    import numpy as np

    valid = np.full((epochs, 2), np.nan)
    valid[[9, -1]] = [[0.05, 0.05], [0.04, 0.04]]
    curves = {"valid_error": valid.tolist(), "test_error": (valid + 0.001).tolist(),
              "train_loss": [[0.1, 0.1]] * epochs, "recon_error": [[[0.2], [0.2]]] * epochs}
    return {"experiment": "mnist-deep", "method": method, "epochs": epochs,
            "paper_epochs": 100, "seeds": {"n": 2}, "paper_test_error": 0.0194,
            "final": {"test_error": {"mean": test, "std": 0.001, "per_seed": [test] * 2}},
            "curves": curves, "wall_seconds": 600.0, "provenance": {"commit": "abcdef0123"},
            "settings_search": search, "command": command, "notes": []}


def test_results_table_commands_and_settings():
    import dtp_eqx

    search = {"n_trials": 16, "epochs": 5, "best_valid_error": 0.0312,
              "file": "results/search/mnist-deep-tp.json"}
    runs = {"dtp": _fake_run("dtp", 0.0188, command="python -m dtp_eqx reproduce x"),
            "tp": _fake_run("tp", 0.0321, search=search, epochs=50)}
    table = dtp_eqx.results_table(runs, names={"dtp": "DTP"}).splitlines()
    assert len(table) == 4 and table[0].count("|") == 12
    assert table[2].startswith("| DTP | 1.88% ± 0.10% | 1.88%, 1.88% | 4.10% (epoch 100) |")
    assert "`python -m dtp_eqx reproduce x`" in table[2] and "`abcdef0`" in table[2]
    assert "searched: best of 16 trials of 5 epochs (validation error 3.12%)" in table[3]
    assert dtp_eqx.run_command(runs["tp"]) == (
        "python -m dtp_eqx reproduce mnist-deep --method tp --epochs 50 --seeds 2 "
        "--settings results/search/mnist-deep-tp.json")
    assert dtp_eqx.run_settings(_fake_run("tp", 0.9)) == "DTP's (no search)"
    with pytest.raises(ValueError, match="runs is empty"):
        dtp_eqx.results_table({})


def test_tp_note_follows_the_result():
    from dtp_eqx._reproduce import _tp_note

    assert "does not learn" in _tp_note(_fake_run("tp", 0.90))
    learned = _tp_note(_fake_run("tp", 0.0321))
    assert "learns on this network: test error 3.21%" in learned
    assert "does not learn" not in learned


def test_a_feedback_rule_run_has_its_own_name_settings_and_alignment(data_dir, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "mnist-deep", "--method", "dtp", "--quick", "--seeds", "1",
                 "--feedback-rule", "l-drl", "--feedback-samples", "2",
                 "--data-dir", str(data_dir), "--no-progress"]) == 0
    out = tmp_path / "results" / "quick" / "mnist-deep-dtp-l-drl-per-batch.json"
    result = _results(out)
    config = result["config"]
    assert (config["feedback_rule"], config["feedback_samples"], config["schedule"]) == (
        "l-drl", 2, "per-batch")
    assert "L-DRL" in result["settings"] and result["paper_test_error"] is None
    alignment = result["alignment"]
    assert len(alignment["weight"]) == 1 and len(alignment["weight"][0]) == 7
    assert len(alignment["transpose_angle"][0]) == 6  # layers 2 .. M-1
    assert all(0 <= a <= 180 for a in alignment["transpose_angle"][0])
