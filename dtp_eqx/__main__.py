"""Command line: `python -m dtp_eqx reproduce EXPERIMENT` and `python -m dtp_eqx report`."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import zipfile


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive (must be >= 1)")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive (must be > 0)")
    return value


def _nonnegative_float(text: str) -> float:
    value = _finite_float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is negative (must be >= 0)")
    return value


FEEDBACK_CHOICES = ("tanh", "sigmoid", "relu", "identity")


def _range(text: str) -> tuple[str, float, float]:
    from ._config import HYPERPARAMETERS

    name, _, bounds = text.partition("=")
    low, _, high = bounds.partition(":")
    if name not in HYPERPARAMETERS:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a searchable setting; expected one of {', '.join(HYPERPARAMETERS)}")
    try:
        low, high = float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=LOW:HIGH") from None
    if not 0 < low <= high < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} needs 0 < LOW <= HIGH (log-uniform)")
    return name, low, high


def build_parser() -> argparse.ArgumentParser:
    from ._config import SCHEDULES, TRAIN_METHODS
    from ._feedback import FEEDBACK_RULES
    from ._paper import PAPER_EXPERIMENTS

    parser = argparse.ArgumentParser(
        prog="python -m dtp_eqx",
        description="Difference target propagation (Lee et al., 2015) in JAX/Equinox.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "reproduce",
        help="train one of the paper's experiments and write results/EXPERIMENT-METHOD.json",
        description="Train one of the paper's experiments with the original code's settings "
        "(override them with the flags below), several seeds at once, and write the "
        "results file. A killed run continues with --resume.",
    )
    run.add_argument("experiment", choices=PAPER_EXPERIMENTS,
                     help="mnist-deep (7x240 tanh), mnist-deep-relu, discrete (sign units), "
                          "stochastic (Bernoulli units), autoencoder, cifar10 (3x1000 tanh)")
    run.add_argument("--method", default="dtp", choices=TRAIN_METHODS,
                     help="dtp (default), tp, bp, or the baselines ste and bp-continuous where "
                          "the experiment has them")
    run.add_argument("--epochs", type=_positive_int, help="epochs (default: the paper's)")
    run.add_argument("--seeds", type=_positive_int, default=3,
                     help="how many seeds, trained together in one compiled program (default 3)")
    run.add_argument("--seed", type=int, default=0, help="first random seed (default 0)")
    run.add_argument("--lr-forward", type=_positive_float, help="forward learning rate")
    run.add_argument("--lr-feedback", type=_positive_float, help="feedback (inverse) learning rate")
    run.add_argument("--top-step", type=_positive_float,
                     help="per-example step of the first target (the original eta / batch size)")
    run.add_argument("--sigma", type=_nonnegative_float, help="inverse-loss noise std")
    run.add_argument("--schedule", choices=SCHEDULES,
                     help="alternate-epoch (original code) or per-batch (paper's Algorithm 1)")
    run.add_argument("--batch-size", type=_positive_int, help="minibatch size (default 100)")
    run.add_argument("--feedback-rule", choices=FEEDBACK_RULES,
                     help="how the feedback mappings train (default: reconstruction, the "
                          "paper's; drl and l-drl bring their own noise and schedule)")
    run.add_argument("--feedback-iterations", type=_positive_int,
                     help="feedback optimizer steps per minibatch (default 1)")
    run.add_argument("--feedback-samples", type=_positive_int,
                     help="noise draws averaged per feedback step (default 1; 10 for l-drl)")
    run.add_argument("--data-dir", help="folder with the dataset files "
                                        "(default: $DTP_EQX_DATA, the user cache, or a download)")
    run.add_argument("--out", help="results file (default results/EXPERIMENT-METHOD.json; "
                     "for DTP or TP, -RULE after the method for a feedback rule other "
                     "than reconstruction and -per-batch on the per-batch schedule)")
    run.add_argument("--quick", action="store_true",
                     help="smoke test: a few hundred examples, 1 epoch, results under results/quick/")
    overwriting = run.add_mutually_exclusive_group()
    overwriting.add_argument("--resume", action="store_true",
                             help="continue an interrupted run from its checkpoint "
                                  "(OUT with .ckpt)")
    overwriting.add_argument("--overwrite", action="store_true",
                             help="replace the results and checkpoints of an earlier run "
                                  "with the same --out (without it, or --resume, such a run "
                                  "stops before training)")
    run.add_argument("--checkpoint-every", type=_positive_int, default=5,
                     help="save a checkpoint every N epochs (default 5)")
    run.add_argument("--eval-every", type=_positive_int, default=1,
                     help="evaluate validation and test sets every N epochs (default 1)")
    run.add_argument("--no-search", action="store_true",
                     help="autoencoder: skip the validation search of its noise levels, "
                          "learning rate and length, and use the defaults")
    run.add_argument("--untied", action="store_true",
                     help="autoencoder: give the decoder weights of its own (the paper ties "
                          "them to the encoder's)")
    run.add_argument("--code-noise", type=_nonnegative_float,
                     help="autoencoder: std of the noise added to the code before decoding")
    run.add_argument("--feedback-activation", choices=FEEDBACK_CHOICES,
                     help="nonlinearity of the feedback mappings (default: the network's)")
    run.add_argument("--settings", metavar="SEARCH.json",
                     help="train with the best settings of a search file written by "
                          "`python -m dtp_eqx search` (flags given here still win)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    search = commands.add_parser(
        "search", help="random search of an experiment's settings on a validation split",
        description="Train many settings of one experiment and method in one compiled "
        "program, score each by its validation error (no test image is seen), and write "
        "results/search/EXPERIMENT-METHOD.json; `reproduce --settings FILE` then trains "
        "with the best.",
    )
    search.add_argument("experiment", choices=PAPER_EXPERIMENTS)
    search.add_argument("--method", default="dtp", choices=TRAIN_METHODS)
    search.add_argument("--trials", type=_positive_int, default=16,
                        help="settings tried (default 16)")
    search.add_argument("--epochs", type=_positive_int, default=5,
                        help="epochs per trial (default 5)")
    search.add_argument("--n-train", type=_positive_int,
                        help="training images used (default: all)")
    search.add_argument("--n-valid", type=_positive_int, default=1000,
                        help="validation images scored (default 1000, as the paper's CIFAR-10)")
    search.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH",
                        type=_range, help="search NAME log-uniformly in [LOW, HIGH]; "
                        "repeat for several (default: a decade either side of the "
                        "original rates and top step, sigma in [0.05, 1])")
    search.add_argument("--feedback-activation", choices=FEEDBACK_CHOICES,
                        help="nonlinearity of the feedback mappings (default: the network's)")
    search.add_argument("--schedule", choices=SCHEDULES, default="alternate-epoch",
                        help="the schedule every trial trains with (default alternate-epoch; "
                             "per-batch writes EXPERIMENT-METHOD-per-batch.json)")
    search.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    search.add_argument("--data-dir", help="folder with the dataset files")
    search.add_argument("--out", help="results file (default results/search/EXPERIMENT-METHOD.json)")
    search.add_argument("--quick", action="store_true", help="smoke test: 2 trials, 1 epoch")
    search.add_argument("--overwrite", action="store_true",
                        help="replace an existing results file of the same --out")
    search.add_argument("--no-progress", action="store_true", help="hide progress bars")
    report = commands.add_parser(
        "report", help="regenerate results/README.md and the learning-curve figures",
        description="Collect every results file into a table beside the paper's numbers.",
    )
    report.add_argument("--results-dir", default="results", help="folder of results files")
    return parser


ANTICIPATED = (OSError, ValueError, FloatingPointError, zipfile.BadZipFile, EOFError)
"""Errors a run can meet for reasons outside the code (files, data, settings, a blow-up):
the command reports them in one line with exit code 2 instead of a traceback. OSError
covers missing, unreadable, unwritable and locked files and ChecksumError."""


def _resume_command(argv: list[str]) -> str:
    """The command line that continues the run of `argv`."""
    kept = [a for a in argv if a != "--overwrite"]
    return "python -m dtp_eqx " + " ".join(
        shlex.quote(a) for a in kept + ([] if "--resume" in kept else ["--resume"]))


def main(argv=None) -> int:
    """The command line; returns the exit code (0, 2 for an error, 130 for Ctrl-C)."""
    argv_used = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv_used)
    except ANTICIPATED as err:
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
            message = f"{message}: {err.filename}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        from ._fit import RunInterrupted

        if isinstance(err, RunInterrupted) and err.checkpoint is not None:
            print(f"\ninterrupted: epoch {err.epoch} is saved in {err.checkpoint}; continue "
                  f"with\n  {_resume_command(argv_used)}", file=sys.stderr)
        else:
            print("\ninterrupted before a checkpoint was saved; nothing to resume.",
                  file=sys.stderr)
        return 130


def _main(argv_used: list[str]) -> int:
    args = build_parser().parse_args(argv_used)
    if args.command == "report":
        from ._reproduce import write_report

        print(f"wrote {write_report(args.results_dir)}")
        return 0

    from ._paper import paper_experiment
    from ._reproduce import reproduce, search_experiment

    command = "python -m dtp_eqx " + " ".join(shlex.quote(a) for a in argv_used)
    methods = paper_experiment(args.experiment)["methods"]
    if args.method not in methods:
        print(f"error: --method {args.method} does not apply to {args.experiment}; "
              f"choose one of {', '.join(methods)}", file=sys.stderr)
        return 2
    network = {"feedback_activation": args.feedback_activation} if args.feedback_activation else {}
    if args.command == "search":
        found = search_experiment(
            args.experiment, args.method, n_trials=args.trials, epochs=args.epochs,
            n_train=args.n_train, n_valid=args.n_valid,
            ranges={name: (low, high) for name, low, high in args.range} or None,
            network=network, schedule=args.schedule, seed=args.seed,
            data_dir=args.data_dir, out=args.out, quick=args.quick,
            overwrite=args.overwrite, command=command, progress=not args.no_progress,
        )
        best = ", ".join(f"{k}={v:.4g}" for k, v in found["best_hyper"].items())
        print(f"{args.experiment} {args.method}: best of {found['n_trials']} trials {best}, "
              f"validation error {100 * found['best_valid_error']:.2f}%")
        return 0
    only_autoencoder = [flag for flag, used in (("--no-search", args.no_search),
                        ("--untied", args.untied), ("--code-noise", args.code_noise is not None))
                        if used]
    if only_autoencoder and args.experiment != "autoencoder":
        print(f"error: {', '.join(only_autoencoder)} applies to the autoencoder experiment "
              f"only, not {args.experiment}", file=sys.stderr)
        return 2
    overrides = {
        name: value
        for name, value in (
            ("epochs", args.epochs), ("lr_forward", args.lr_forward),
            ("lr_feedback", args.lr_feedback), ("top_step", args.top_step),
            ("sigma", args.sigma), ("schedule", args.schedule), ("batch_size", args.batch_size),
            ("code_noise", args.code_noise), ("feedback_rule", args.feedback_rule),
            ("feedback_iterations", args.feedback_iterations),
            ("feedback_samples", args.feedback_samples),
        )
        if value is not None
    }
    result = reproduce(
        args.experiment, args.method, seeds=args.seeds, seed=args.seed,
        data_dir=args.data_dir, out=args.out, quick=args.quick, resume=args.resume,
        overwrite=args.overwrite, checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every, progress=not args.no_progress,
        search=not args.no_search,
        network={**network, **({"tied": False} if args.untied else {})},
        settings=args.settings, command=command,
        **overrides,
    )
    from ._reproduce import _label_of

    test = result["final"]["test_error"]
    print(f"{args.experiment} {_label_of(result)}: test error {100 * test['mean']:.2f}% "
          f"± {100 * test['std']:.2f}% over {args.seeds} seeds, {result['epochs']} epochs, "
          f"{result['seconds_per_epoch']:.2f} s/epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
