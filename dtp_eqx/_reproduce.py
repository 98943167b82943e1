"""Reproduce the paper's experiments: one call (or command) per experiment and method.

`reproduce` trains several seeds of one configuration in one compiled program, saves
checkpoints as it goes, and writes `results/EXPERIMENT-METHOD.json` with the curves,
the final errors (mean and standard deviation over seeds) and how the run was made.
`write_report` turns every results file into `results/README.md` (our numbers beside
the paper's) and one learning-curve figure per experiment.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from ._alignment import jacobian_alignment
from ._autoencoder import linear_probe
from ._checkpoint import checkpoint_meta
from ._config import BACKPROP_METHODS
from ._data import load_cifar10, load_mnist
from ._diagnostics import angles_to_backprop
from ._fit import fit
from ._models import ensemble_member
from ._outputs import claim_outputs
from ._paper import feedback_rule_settings, paper_config, paper_experiment, paper_network
from ._pretrain import finetune, search_autoencoder, summary
from ._provenance import provenance, write_json

QUICK = {"n_train": 500, "n_valid": 200, "n_test": 200, "epochs": 1, "n_samples": 5,
         "search": {"n_trials": 2, "check_epochs": (1,), "probe_epochs": 1},
         "finetune_epochs": 1, "probe_epochs": 2}
"""What `quick=True` shrinks a run to: a smoke test of the whole pipeline."""
PROBE_EPOCHS = 100
FINETUNES = {"bp": ("bp", False), "dtp": ("dtp", False), "bp-from-scratch": ("bp", True)}
"""The auto-encoder's fine-tunings: name -> (method, from a random start instead)."""
"""Epochs of the auto-encoder's linear probes (Adam 1e-3, best validation epoch kept)."""


def _check_data_dir(data_dir) -> None:
    if data_dir is not None and not Path(data_dir).is_dir():
        raise FileNotFoundError(f"data_dir={str(data_dir)!r} is not a directory.")


def _load(dataset: str, data_dir):
    _check_data_dir(data_dir)
    if dataset == "cifar10":
        return load_cifar10(data_dir)
    return load_mnist(data_dir)


def reproduce(
    experiment: str,
    method: str = "dtp",
    *,
    seeds: int = 3,
    seed: int = 0,
    data_dir=None,
    out=None,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 5,
    eval_every: int = 1,
    command: str | None = None,
    progress: bool = True,
    search: bool = True,
    network: dict | None = None,
    settings=None,
    **overrides,
) -> dict:
    """Train `experiment` by `method` for `seeds` seeds at once and write a results file.

    Args:
        experiment: one of `dtp_eqx.PAPER_EXPERIMENTS`.
        method: one of the experiment's methods (`dtp_eqx.paper_experiment(...)["methods"]`).
        seeds: how many seeds, trained together as one vmapped program (keyword-only).
        seed: the first seed; models are initialised from `seed` and trained with
            `seed + 1` (keyword-only).
        data_dir: folder with the dataset files (default: `DTP_EQX_DATA`, cache, download).
        out: the results file (default `results/EXPERIMENT-METHOD.json`, or under
            `results/quick/` in quick mode); checkpoints go beside it as `.ckpt`.
        quick: a few hundred examples for one epoch, to test the pipeline.
        resume: continue from the checkpoint of an interrupted run.
        overwrite: replace the outputs of an earlier run (its results file and
            checkpoints). Without it, or `resume`, a run whose outputs exist stops before
            training; a second run on the same `out` stops at once while the first holds
            its lock (`OUT.lock`).
        checkpoint_every, eval_every: passed to `dtp_eqx.fit`.
        command: the command line that asked for this run, recorded in the results file.
        progress: show progress bars.
        search: for the auto-encoder, choose its noise levels, learning rate and
            training length by `dtp_eqx.search_autoencoder` on the validation set (those
            given in `overrides` are kept as given); False uses the defaults.
        network: keyword arguments replacing the network's (see `dtp_eqx.paper_network`),
            e.g. `{"tied": False}` for an auto-encoder with a decoder of its own, or
            `{"feedback_activation": "tanh"}`.
        settings: a search results file written by `dtp_eqx.search_experiment` (or
            `python -m dtp_eqx search`) for this experiment and method: its best
            settings and network replace the original ones (`overrides` and `network`
            still win), and the results file records the search.
        **overrides: `TrainConfig` fields replacing the original settings, e.g. `epochs=10`.

    Returns:
        The results dictionary that was written.
    """
    info = paper_experiment(experiment)
    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"seeds={seeds!r} must be a positive integer.")
    # how the run was made: the code and date when it starts (before any search)
    now = provenance()
    autoencoder = experiment == "autoencoder"
    network = dict(network or {})
    from_search = None
    if settings is not None:
        from_search = _read_search(settings, experiment, method, overrides.get("schedule"))
        network = {**from_search["network"], **network}
        overrides = {"schedule": from_search["schedule"], **from_search["best_hyper"],
                     **overrides}
    if quick:
        overrides = {"epochs": QUICK["epochs"], "n_samples": QUICK["n_samples"], **overrides}
    config = paper_config(experiment, method, **overrides)
    # the paper gives no training length for its auto-encoder, nor any for our CNN
    paper_epochs = (None if autoencoder or not info["paper"]
                    else paper_config(experiment, method).epochs)
    _check_data_dir(data_dir)
    label = run_label(method, config.schedule, config.feedback_rule)
    default = Path("results") / ("quick" if quick else "") / f"{experiment}-{label}.json"
    out = Path(out) if out is not None else default
    checkpoint = out.with_suffix(".ckpt")
    outputs = {"results file": out, "checkpoint": checkpoint}
    if autoencoder:
        if search:
            outputs["search file"] = out.with_suffix(".search.ckpt")
        for name in FINETUNES:
            outputs[f"{name} fine-tuning checkpoint"] = out.with_suffix(f".finetune-{name}.ckpt")
    with claim_outputs(out, outputs, resume=resume, overwrite=overwrite, command=command,
                       resumable=tuple(p for w, p in outputs.items() if w != "results file")):
        return _reproduce(
            experiment, method, info, config, overrides, network, from_search, now,
            seeds=seeds, seed=seed, data_dir=data_dir, out=out, quick=quick, resume=resume,
            checkpoint_every=checkpoint_every, eval_every=eval_every, command=command,
            progress=progress, search=search, paper_epochs=paper_epochs,
        )


def _reproduce(experiment, method, info, config, overrides, network, from_search, now, *,
               seeds, seed, data_dir, out, quick, resume, checkpoint_every, eval_every,
               command, progress, search, paper_epochs) -> dict:
    """The run of `reproduce`, once its outputs are checked and locked."""
    autoencoder = experiment == "autoencoder"
    data = _load(info["dataset"], data_dir)
    if quick:
        data = data.take(QUICK["n_train"], QUICK["n_valid"], QUICK["n_test"], spread=True)
    init_keys = jax.random.split(jax.random.key(seed), seeds)
    train_keys = jax.random.split(jax.random.key(seed + 1), seeds)

    def make(k):
        return paper_network(experiment, key=k, **network)

    model = eqx.filter_vmap(make)(init_keys)
    checkpoint = out.with_suffix(".ckpt")
    searched = None
    if autoencoder and search:
        searched = _search_autoencoder(make, data, config, info, overrides, quick=quick,
                                       seed=seed, sidecar=out.with_suffix(".search.ckpt"),
                                       resume=resume, progress=progress)
        chosen = {k: v for k, v in searched["best"].items()
                  if k not in ("trial", "probe_valid_error") and k not in overrides}
        config = dataclasses.replace(config, **chosen)
    # The first start's code and date; a resumed run keeps them from its checkpoint and
    # adds where and with what code it was resumed.
    run_info = {"started": now, "command": command, "resumed": []}
    if resume and checkpoint.exists():
        meta = checkpoint_meta(checkpoint)
        run_info = meta.get("run_info", run_info)
        run_info = {**run_info, "resumed": run_info["resumed"] + [
            {"epoch": meta["epoch"], "commit": now["commit"], "date": now["date"],
             "command": command}]}
    model, history = fit(
        model, data, config, key=train_keys, progress=progress, eval_every=eval_every,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
        run_info=run_info,
    )
    after_fit = time.perf_counter()
    final = {f"{split}_error": summary(history[f"{split}_error"][-1])
             for split in ("train", "valid", "test")}
    if not autoencoder:
        extra = {"alignment": _alignment(model, data, config, seeds, quick=quick)}
    else:
        extra = _judge_autoencoder(model, eqx.filter_vmap(make)(init_keys), data, info,
                                   train_keys=train_keys, quick=quick, out=out,
                                   resume=resume, progress=progress)
        extra["search"] = searched
        headline = extra["finetune"][extra["chosen_finetune"]]
        final = {
            "train_error": summary([np.nan] * seeds),
            "valid_error": headline["valid_error"],
            "test_error": headline["test_error"],
            "reconstruction_error": summary(history["test_loss"][-1]),
            "measure": f"test error of the 784-1000-10 network fine-tuned by "
                       f"{extra['chosen_finetune']} from the trained encoder ("
                       + ("bp and dtp tie on validation error, so the first is reported"
                          if extra["finetune_tie"] else
                          "the fine-tuning with the lower validation error")
                       + "; see \"finetune\")",
        }
    # wall time over every resume: the checkpoint's, written at the end of fit, and since
    wall = checkpoint_meta(checkpoint)["wall_seconds"] + time.perf_counter() - after_fit
    wall += searched["seconds"] if searched else 0.0
    seconds = history["seconds"]
    notes = []
    if paper_epochs is not None and config.epochs < paper_epochs:
        notes.append(f"{config.epochs} of the paper's {paper_epochs} epochs")
    if data.lossy:
        notes.append(f"data: {data.name}, not the original images")
    if quick:
        notes.append("quick mode: a smoke test on a few hundred examples, not a result")
    result = {
        "experiment": experiment,
        "method": method,
        "data": repr(data),
        "data_name": data.name,
        "lossy_data": data.lossy,
        "quick": quick,
        "epochs": config.epochs,
        "paper_epochs": paper_epochs,
        "seeds": {"n": seeds, "init": seed, "train": seed + 1},
        "eval_every": eval_every,
        "command": run_info["command"],
        "config": dataclasses.asdict(config),
        "network": {**info["network"], **network},
        "settings": info["settings"] + feedback_rule_settings(config),
        # the paper's figures are for its own (reconstruction-trained) feedback mappings
        "paper_test_error": (info["paper"].get(method)
                             if config.feedback_rule == "reconstruction" else None),
        "final": final,
        "notes": notes,
        "wall_seconds": wall,
        # training time of every epoch, over all resumes (evaluation excluded)
        "train_seconds": float(np.sum(seconds)),
        "resumed": run_info["resumed"],
        "seconds_per_epoch": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
        "curves": {k: np.asarray(v).tolist() for k, v in history.items()},
        "provenance": {**run_info["started"], "finished": provenance()["date"]},
        "settings_search": from_search,
        **extra,
    }
    write_json(out, result)
    return result


ALIGNMENT_EXAMPLES = 1000
"""Validation examples on which `reproduce` measures the trained networks' angles."""


def _alignment(model, data, config, seeds, *, quick) -> dict | None:
    """Per hidden layer and seed, the trained network's angles to back-prop
    (`dtp_eqx.angles_to_backprop`, at the run's own top step) and, for its trained
    feedback mappings, `dtp_eqx.jacobian_alignment`, on the first validation examples;
    None for back-prop runs and stochastic networks (whose angles need samples)."""
    if config.method in BACKPROP_METHODS:
        return None
    n = QUICK["n_valid"] if quick else ALIGNMENT_EXAMPLES
    x, y = jax.numpy.asarray(data.x_valid[:n]), jax.numpy.asarray(data.y_valid[:n])
    members = [ensemble_member(model, i) for i in range(seeds)]
    if members[0].stochastic:
        return None
    angles = [angles_to_backprop(m, x, y, top_step=config.top_step, method=config.method)
              for m in members]
    jac = [jacobian_alignment(m, x[:100]) for m in members]
    out = {name: np.stack([np.asarray(a[name]) for a in angles]).tolist()
           for name in ("weight", "activation", "offset")}
    out.update({name: np.stack([np.asarray(j[name]) for j in jac]).tolist()
                for name in jac[0]})
    return {"examples": n, "layers": "angles: layers 1 .. M-1; jacobian: 2 .. M-1",
            "shape": "(seeds, layers)", **out}


def run_label(method: str, schedule: str = "alternate-epoch",
              feedback_rule: str = "reconstruction") -> str:
    """The name a run goes by in `load_results`, the report and file names: its method,
    then, for target propagation, `-RULE` when its feedback mappings train by a rule
    other than the 2015 reconstruction, and `-per-batch` on the per-batch schedule (the
    original code's alternate-epoch schedule, and every back-prop method, go by the
    method alone).

    >>> run_label("dtp"), run_label("dtp", "per-batch"), run_label("bp", "per-batch")
    ('dtp', 'dtp-per-batch', 'bp')
    >>> run_label("dtp", "per-batch", "l-drl")
    'dtp-l-drl-per-batch'
    """
    if method in BACKPROP_METHODS:
        return method
    rule = "" if feedback_rule == "reconstruction" else f"-{feedback_rule}"
    return f"{method}{rule}" + ("" if schedule == "alternate-epoch" else f"-{schedule}")


def _label_of(run: dict) -> str:
    config = run.get("config", {})
    return run_label(run["method"], config.get("schedule", "alternate-epoch"),
                     config.get("feedback_rule", "reconstruction"))


def _read_search(path, experiment: str, method: str, schedule: str | None = None) -> dict:
    """A search results file's summary, checked to be for `experiment` and `method`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"settings={str(path)!r} is not a file; write one with "
                                f"`python -m dtp_eqx search {experiment} --method {method}`.")
    found = json.loads(path.read_text())
    if (found.get("experiment"), found.get("method")) != (experiment, method):
        raise ValueError(
            f"settings={str(path)!r} is a search for {found.get('experiment')!r} by "
            f"{found.get('method')!r}, not {experiment!r} by {method!r}."
        )
    searched = found.get("config", {}).get("schedule", "alternate-epoch")
    if schedule is not None and method not in BACKPROP_METHODS and schedule != searched:
        raise ValueError(
            f"settings={str(path)!r} were searched with the {searched!r} schedule, not "
            f"{schedule!r}: search again with --schedule {schedule}, or drop --schedule."
        )
    keys = ("best_hyper", "best_valid_error", "n_trials", "ranges", "epochs", "n_train",
            "n_valid", "network", "provenance")
    return {"file": str(path), "schedule": searched, **{k: found[k] for k in keys}}


def default_search_ranges(experiment: str, method: str) -> dict[str, tuple[float, float]]:
    """Where `search_experiment` looks: a decade either side of the original learning
    rates (and, for target propagation, of the top step), and the noise `sigma` in
    `[0.05, 1]`; back-prop methods search their learning rate only."""
    from ._sweep import default_ranges

    config = paper_config(experiment, method)
    if method in ("dtp", "tp"):
        return default_ranges(config)
    return {"lr_forward": (config.lr_forward / 10, config.lr_forward * 10)}


def search_experiment(
    experiment: str,
    method: str = "dtp",
    *,
    n_trials: int = 16,
    epochs: int = 5,
    n_train: int | None = None,
    n_valid: int = 1000,
    ranges: dict[str, tuple[float, float]] | None = None,
    network: dict | None = None,
    schedule: str = "alternate-epoch",
    seed: int = 0,
    data_dir=None,
    out=None,
    quick: bool = False,
    overwrite: bool = False,
    command: str | None = None,
    progress: bool = True,
) -> dict:
    """Random search of an experiment's settings on a validation split; write its results.

    Every trial trains `epochs` epochs on `n_train` training images (all when None) and
    is scored by its validation error on `n_valid` images; all trials run in one
    compiled program (`dtp_eqx.random_search`). No test image is seen. The results file
    (default `results/search/EXPERIMENT-LABEL.json`, `LABEL` being `dtp_eqx.run_label` of
    the method and schedule) lists every trial and the best settings;
    `reproduce(..., settings=that_file)` trains with them, on the same schedule.

    Args:
        experiment, method: as for `reproduce`.
        n_trials: settings tried, drawn log-uniformly from `ranges` (keyword-only).
        epochs: length of each trial (keyword-only).
        n_train, n_valid: training and validation images used (keyword-only).
        ranges: `{name: (low, high)}`; default `default_search_ranges` (keyword-only).
        network: network keyword arguments replacing the paper's, e.g.
            `{"feedback_activation": "tanh"}` (keyword-only).
        schedule: the `TrainConfig.schedule` every trial trains with (keyword-only).
        seed: draws the settings, initial weights and training (keyword-only).
        data_dir, out, quick, command, progress: as for `reproduce` (keyword-only).
        overwrite: replace an existing results file; without it the search stops before
            training when `out` exists (keyword-only).

    Returns:
        The results dictionary that was written.
    """
    start, started = time.perf_counter(), provenance()
    info = paper_experiment(experiment)
    network = dict(network or {})
    if quick:
        n_trials, epochs, n_train, n_valid = min(n_trials, 2), 1, QUICK["n_train"], QUICK["n_valid"]
    config = paper_config(experiment, method, epochs=epochs, schedule=schedule)
    ranges = default_search_ranges(experiment, method) if ranges is None else ranges
    default = Path("results") / ("quick" if quick else "") / "search"
    label = run_label(method, config.schedule)
    out = Path(out) if out is not None else default / f"{experiment}-{label}.json"
    _check_data_dir(data_dir)
    with claim_outputs(out, {"results file": out}, resume=False, overwrite=overwrite,
                       command=command):
        data = _load(info["dataset"], data_dir).take(n_train, n_valid, 0)
        if data.x_valid is None or len(data.x_valid) < 1:
            raise ValueError(f"n_valid={n_valid!r} must leave at least one validation image.")
        found = _search(experiment, network, data, config, n_trials=n_trials, ranges=ranges,
                        seed=seed, progress=progress, epochs=epochs)
        trials = [
            {**{name: float(v[i]) for name, v in found["hyper"].items()},
             "valid_error": float(found["valid_error"][i]),
             "train_loss": float(found["history"]["train_loss"][-1][i])}
            for i in range(n_trials)
        ]
        result = {
            "experiment": experiment,
            "method": method,
            "quick": quick,
            "data": repr(data),
            "n_trials": n_trials,
            "epochs": epochs,
            "n_train": len(data.x_train),
            "n_valid": len(data.x_valid),
            "ranges": {name: list(map(float, r)) for name, r in ranges.items()},
            "network": network,
            "config": dataclasses.asdict(config),
            "seed": seed,
            "trials": trials,
            "best": found["best"],
            "best_hyper": found["best_hyper"],
            "best_valid_error": float(found["valid_error"][found["best"]]),
            "command": command,
            "wall_seconds": time.perf_counter() - start,
            "provenance": {**started, "finished": provenance()["date"]},
        }
        write_json(out, result)
    return result


def _search(experiment, network, data, config, *, n_trials, ranges, seed, progress, epochs):
    """`random_search` over the experiment's network (`search_experiment`'s trials)."""
    from ._sweep import random_search

    return random_search(
        lambda k: paper_network(experiment, key=k, **network), data, config,
        n_trials=n_trials, key=jax.random.key(seed), ranges=ranges, progress=progress,
        eval_every=epochs,
    )


def _search_autoencoder(make, data, config, info, overrides, *, quick, seed, sidecar,
                        resume, progress) -> dict:
    """The auto-encoder's settings search; a resumed run reads it back from `sidecar`."""
    if resume and sidecar.exists():
        return json.loads(sidecar.read_text())
    start = time.perf_counter()
    spec = {**info["search"], **(QUICK["search"] if quick else {})}
    ranges = {k: v for k, v in spec["ranges"].items() if k not in overrides}
    searched = search_autoencoder(
        make, data, config, n_trials=spec["n_trials"], check_epochs=spec["check_epochs"],
        ranges=ranges, probe_epochs=spec["probe_epochs"],
        key=jax.random.fold_in(jax.random.key(seed), 7), progress=progress,
    )
    searched["seconds"] = time.perf_counter() - start
    write_json(sidecar, searched)
    return searched


def _judge_autoencoder(model, untrained, data, info, *, train_keys, quick, out, resume,
                       progress) -> dict:
    """Linear probes (raw pixels, untrained and trained encoders) and fine-tuning."""
    from ._config import TrainConfig
    from ._models import ensemble_member

    seeds = len(train_keys)
    probe_epochs = QUICK["probe_epochs"] if quick else PROBE_EPOCHS
    probe_key = jax.random.fold_in(train_keys[0], 10**6)

    def probe(encoder, i):
        p = linear_probe(encoder, data, key=jax.random.fold_in(probe_key, i),
                         epochs=probe_epochs, select=True)
        return {k: p[k] for k in ("valid_error", "test_error", "epoch")}

    probes = {"pixels": [probe(lambda x: x, 0)]}
    for name, ensemble in (("untrained", untrained), ("trained", model)):
        probes[name] = [probe(ensemble_member(ensemble, i), i) for i in range(seeds)]
    probes = {
        name: {"valid_error": summary([p["valid_error"] for p in runs]),
               "test_error": summary([p["test_error"] for p in runs]),
               "epochs_kept": [p["epoch"] for p in runs]}
        for name, runs in probes.items()
    }
    spec = info["finetune"]
    epochs = QUICK["finetune_epochs"] if quick else spec["epochs"]
    finetunes = {}
    for name, (method, scratch) in FINETUNES.items():
        grid = spec[method]
        config = TrainConfig(method=method, schedule="per-batch", epochs=epochs,
                             lr_forward=grid["lr_forward"][0],
                             input_noise=spec.get("input_noise", 0.0))
        finetunes[name] = finetune(
            model, data, config, grid=grid, from_scratch=scratch,
            key=jax.random.fold_in(train_keys[0], 2 * 10**6 + len(finetunes)),
            checkpoint=out.with_suffix(f".finetune-{name}.ckpt"), resume=resume,
            progress=progress,
        )
    # the lower mean validation error; on a tie, the first (back-prop), and the file says so
    chosen = min(("bp", "dtp"), key=lambda k: finetunes[k]["valid_error"]["mean"])
    tie = finetunes["bp"]["valid_error"]["mean"] == finetunes["dtp"]["valid_error"]["mean"]
    return {
        "finetune_tie": bool(tie),
        "probes": probes,
        "probe": f"a linear softmax classifier on frozen features (raw pixels, the untrained "
                 f"and the trained encoder), Adam 1e-3, {probe_epochs} epochs, the epoch "
                 "with the lowest validation error kept",
        "finetune": finetunes,
        "chosen_finetune": chosen,
    }


def _fmt(value) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def load_results(results_dir="results") -> dict[tuple[str, str], dict]:
    """Read the results files written by `reproduce`, skipping quick runs.

    Args:
        results_dir: folder holding `EXPERIMENT-METHOD.json` files.

    Returns:
        A dict from `(experiment, label)` to the parsed JSON of that run, where `label`
        is `dtp_eqx.run_label` of its method and schedule (`"dtp"`, `"dtp-per-batch"`,
        `"bp"`, ...) and `"final"` holds the
        train / valid / test error as `{"mean", "std", "per_seed"}`, `"curves"` the
        per-epoch metrics with shape `(epochs, n_seeds)` (NaN where not evaluated),
        `"config"`, `"seeds"`, `"epochs"`, `"wall_seconds"` and `"provenance"`.

    Raises:
        FileNotFoundError: when `results_dir` is not a folder.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(
            f"results_dir={str(results_dir)!r} is not a folder; run "
            "`python -m dtp_eqx reproduce EXPERIMENT` to make results files."
        )
    runs = (json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json")))
    return {(r["experiment"], _label_of(r)): r for r in runs if not r.get("quick")}


def run_command(run: dict) -> str:
    """The command line that made a results file's run (from `load_results`).

    The one the file records, or, for older files that record none, one rebuilt from
    its experiment, method, epochs, seeds and settings file.
    """
    if run.get("command"):
        return run["command"]
    cmd = f"python -m dtp_eqx reproduce {run['experiment']} --method {run['method']}"
    if run["epochs"] != run.get("paper_epochs"):
        cmd += f" --epochs {run['epochs']}"
    if run["seeds"]["n"] != 3:
        cmd += f" --seeds {run['seeds']['n']}"
    if run.get("settings_search"):
        cmd += f" --settings {run['settings_search']['file']}"
    return cmd


def run_settings(run: dict) -> str:
    """Where a run's settings came from, as a phrase: a validation search (with its size
    and best validation error) or the defaults of `paper_config`."""
    found = run.get("settings_search")
    if found:
        return (f"searched: best of {found['n_trials']} trials of {found['epochs']} epochs "
                f"(validation error {_fmt(found['best_valid_error'])})")
    return "the original code's" if run["method"] != "tp" else "DTP's (no search)"


def results_table(runs, *, names: dict | None = None) -> str:
    """A Markdown table of full runs (values of `load_results`), one row per run.

    Columns: method, test error (mean ± std over seeds), per seed, test error at the
    epoch of best validation error, the paper's figure, epochs (the paper's), seeds,
    where the settings came from, wall-clock time, commit and command.

    Args:
        runs: a dict `{label: run}` or a list of runs (labelled by their method).
        names: display names for the labels, e.g. `{"dtp": "DTP"}` (keyword-only).

    Returns:
        The table as Markdown text; a notebook shows it with `IPython.display.Markdown`.
    """
    items = list(runs.items()) if isinstance(runs, dict) else [(r["method"], r) for r in runs]
    if not items:
        raise ValueError("runs is empty; pass the runs load_results returned.")
    names = names or {}
    header = ["method", "test error", "per seed", "at best validation", "paper",
              "epochs (paper's)", "seeds", "settings", "time", "commit", "command"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, run in items:
        test = run["final"]["test_error"]
        seconds = run.get("wall_seconds") or 0.0
        time_ = f"{seconds / 60:.0f} min" if seconds < 2 * 3600 else f"{seconds / 3600:.1f} h"
        commit = (run.get("provenance") or {}).get("commit") or "?"
        commit = f"`{commit[:7]}`" + (" (with changes)" if commit.endswith("-dirty") else "")
        cells = [names.get(label, label), f"{_fmt(test['mean'])} ± {_fmt(test['std'])}",
                 ", ".join(_fmt(v) for v in test["per_seed"]), _at_best_validation(run),
                 _fmt(run.get("paper_test_error")) or "—",
                 f"{run['epochs']} ({run.get('paper_epochs') or 'not given'})",
                 f"{run['seeds']['n']}", run_settings(run), time_, commit,
                 f"`{run_command(run)}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _at_best_validation(run: dict) -> str:
    """'1.23% (epoch 450)': mean test error where the mean validation error is lowest."""
    valid = np.asarray(run["curves"]["valid_error"], np.float64)
    test = np.asarray(run["curves"]["test_error"], np.float64)
    if valid.ndim > 1:
        valid, test = valid.mean(axis=1), test.mean(axis=1)
    keep = np.isfinite(valid) & np.isfinite(test)
    if not keep.any():
        return ""
    epoch = int(np.flatnonzero(keep)[np.argmin(valid[keep])])
    return f"{_fmt(test[epoch])} (epoch {epoch + 1})"


def _paper_gap(run: dict) -> str | None:
    """'misses the paper by 0.41 points (> spread 0.05)' when the mean test error is above
    the paper's by more than the standard deviation over seeds, else None."""
    paper = run.get("paper_test_error")
    test = run["final"]["test_error"]
    if paper is None or not np.isfinite(test["mean"]):
        return None
    gap = test["mean"] - paper
    if gap <= test["std"]:
        return None
    return f"misses the paper by {100 * gap:.2f} points (> spread {100 * test['std']:.2f})"


def _tp_note(run: dict) -> str:
    """Why vanilla TP fails, in the run's own numbers."""
    loss = np.asarray(run["curves"]["train_loss"], np.float64)[-1]
    recon = np.asarray(run["curves"]["recon_error"], np.float64)[-1]
    chance = np.log(run.get("n_classes", 10))
    found = run.get("settings_search")
    settings = (
        f"the best settings of a validation search of {found['n_trials']} trials (best "
        f"validation error {_fmt(found['best_valid_error'])} after {found['epochs']} epochs)"
        if found else "DTP's settings"
    )
    test = run["final"]["test_error"]["mean"]
    if test < 0.5:  # it learned: say how far it got, not why it fails
        return (
            f"Vanilla TP, with {settings}, learns on this network: test error "
            f"{_fmt(test)} after {run['epochs']} epochs. It has no difference correction, "
            "so every target below the top carries the reconstruction errors of the "
            "inverses above it (book chapters 3 and 4). The paper reports no TP number "
            "for this network."
        )
    return (
        f"Why TP fails here: vanilla TP, here with {settings}, has no difference "
        "correction, so every target below the top carries the reconstruction errors of "
        "the inverses above it (book chapters 3 and 4). On this network it does not "
        f"learn: after {run['epochs']} epochs the training cross-entropy per seed is "
        f"{', '.join(f'{v:.2f}' for v in np.atleast_1d(loss))} (chance: ln 10 = "
        f"{chance:.2f}), and the mean clean reconstruction error of the inverses is "
        f"{float(np.mean(recon)):.3f}: the hidden layers have saturated into nearly "
        "constant codes that the inverses reproduce trivially, so the targets carry no "
        "information about the input. The paper reports no TP number for this network."
    )


def _autoencoder_note(run: dict) -> list[str]:
    """The auto-encoder's probes, fine-tunings and settings search, as Markdown lines."""
    if "probes" not in run:
        return []

    def cell(summary_):
        return f"{_fmt(summary_['mean'])} ± {_fmt(summary_['std'])}"

    lines = ["", "How the features were judged (test error, mean ± std over seeds; each "
             "choice made on the validation set):", "",
             "| features | judged by | test error | chosen |", "|---|---|---|---|"]
    names = {"pixels": "raw pixels", "untrained": "untrained encoder",
             "trained": "DTP-trained encoder"}
    for name, probe in run["probes"].items():
        lines.append(f"| {names[name]} | linear probe | {cell(probe['test_error'])} | "
                     f"epochs {probe['epochs_kept']} |")
    for name, tune in run["finetune"].items():
        chosen = ", ".join(f"{k} {v:g}" for k, v in tune["chosen"].items() if k != "point")
        features = "random init" if tune["from_scratch"] else "DTP-trained encoder"
        how = f"fine-tuning by {tune['config']['method']}"
        mark = " (reported)" if name == run.get("chosen_finetune") else ""
        lines.append(f"| {features} | {how}{mark} | {cell(tune['test_error'])} | {chosen} |")
    search = run.get("search")
    if search:
        best = ", ".join(f"{k} {v:.3g}" for k, v in search["best"].items()
                         if k not in ("trial", "probe_valid_error"))
        lines += ["", f"Settings (ours: the paper gives none) from a random search of "
                  f"{search['n_trials']} trials over {search['ranges']}, scored by a "
                  f"{search['probe_epochs']}-epoch linear probe's validation error after "
                  f"{search['check_epochs']} epochs: {best}."]
    return lines


def _search_note(run: dict) -> list[str]:
    found = run.get("settings_search")
    if not found:
        return []
    best = ", ".join(f"{k} {v:.3g}" for k, v in found["best_hyper"].items())
    return ["", f"`{_label_of(run)}` settings from a validation search (`{found['file']}`): "
            f"best of {found['n_trials']} trials of {found['epochs']} epochs on "
            f"{found['n_train']} training and {found['n_valid']} validation images, ranges "
            f"{found['ranges']}, network {found['network'] or 'as the paper'}: {best} "
            f"(validation error {_fmt(found['best_valid_error'])})."]


def write_report(results_dir="results") -> Path:
    """Write `results_dir/README.md` and `results_dir/EXPERIMENT.png` from the results files.

    The table puts each run's test error (mean and standard deviation over seeds) beside
    the paper's, with how many seeds and epochs it used; each figure shows the
    validation error of every method of one experiment over epochs (mean over seeds).
    A hand-written `results_dir/notes/EXPERIMENT.md` (what was tried, earlier runs) is
    copied under that experiment's figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    results_dir = Path(results_dir)
    runs = list(load_results(results_dir).values())
    lines = [
        "# Results",
        "",
        "Made by `python -m dtp_eqx reproduce EXPERIMENT --method METHOD` and collected by",
        "`python -m dtp_eqx report`. Test error at the last epoch, mean ± standard deviation",
        "over seeds; the paper's figures are those quoted in `../shared/docs/paper-notes.md`",
        "(section 3). Each results file records its commit, date, device, versions, seeds",
        "and configuration.",
        "",
        "The column *at best validation* is the mean test error at the evaluated epoch",
        "whose mean validation error is lowest (model selection by validation, which the",
        "original code's logs allow), with that epoch.",
        "",
        "| experiment | method | ours: test error | at best validation | paper | seeds "
        "| epochs (paper's) | data | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    missed = {}  # experiment: the rows that miss the paper by more than their spread
    for r in runs:
        test = r["final"]["test_error"]
        best = _at_best_validation(r)
        notes = list(r["notes"])
        gap = _paper_gap(r)
        if gap is not None:
            notes.append(gap)
            missed.setdefault(r["experiment"], []).append(_label_of(r))
        lines.append(
            f"| {r['experiment']} | {_label_of(r)} | {_fmt(test['mean'])} ± {_fmt(test['std'])} "
            f"| {best} | {_fmt(r['paper_test_error'])} | {r['seeds']['n']} | {r['epochs']} "
            f"({r['paper_epochs'] or 'not given'}) | {r['data_name']} | {'; '.join(notes)} |"
        )
    for experiment in sorted({r["experiment"] for r in runs}):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        # classifiers: validation error; the auto-encoder: its reconstruction error
        metric, scale, label = (
            ("valid_loss", 1, "validation reconstruction error")
            if experiment == "autoencoder" else ("valid_error", 100, "validation error (%)")
        )
        for r in runs:
            if r["experiment"] != experiment:
                continue
            curve = np.asarray(r["curves"][metric], np.float64)
            curve = curve.mean(axis=-1) if curve.ndim > 1 else curve
            epochs = np.arange(1, len(curve) + 1)
            keep = np.isfinite(curve)
            ax.plot(epochs[keep], scale * curve[keep], marker="." if keep.sum() < 20 else None,
                    label=_label_of(r))
        ax.set(xlabel="epoch", ylabel=label, yscale="log", title=experiment)
        ax.legend()
        fig.tight_layout()
        fig.savefig(results_dir / f"{experiment}.png", dpi=100)
        plt.close(fig)
        settings = next(r["settings"] for r in runs if r["experiment"] == experiment)
        lines += ["", f"## {experiment}", "", f"Settings: {settings}.", "",
                  f"![{experiment}]({experiment}.png)"]
        tp = next((r for r in runs if r["experiment"] == experiment and r["method"] == "tp"),
                  None)
        if tp is not None:
            lines += ["", _tp_note(tp)]
        for r in runs:
            if r["experiment"] == experiment:
                lines += _autoencoder_note(r) + _search_note(r)
        notes = results_dir / "notes" / f"{experiment}.md"
        if notes.is_file():
            lines += ["", notes.read_text().strip()]
        elif experiment in missed:
            lines += ["", f"**Misses the paper ({', '.join(missed[experiment])}), and nothing "
                      f"is recorded yet about what was tried:** write `notes/{experiment}.md`."]
    path = results_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
