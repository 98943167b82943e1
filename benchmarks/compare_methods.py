"""Train one of the paper's networks by several methods for the same short budget.

Uses the original code's settings (`dtp_eqx.paper_config`) and the full MNIST split
(50,000 / 10,000 / 10,000). For each method it records the test error after the last
epoch, the seconds per training epoch (median after the first, which compiles; one
alternate-epoch DTP epoch is an inverse pass plus a forward pass) and the curves, and
writes them with provenance to benchmarks/results/EXPERIMENT-EPOCHSep.json.

    python benchmarks/compare_methods.py mnist-deep --methods dtp bp --epochs 10
    python benchmarks/compare_methods.py discrete --methods dtp bp ste bp-continuous --epochs 5
    python benchmarks/compare_methods.py stochastic --methods dtp ste bp --epochs 5
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

import dtp_eqx
from dtp_eqx._provenance import provenance, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=dtp_eqx.PAPER_EXPERIMENTS)
    parser.add_argument("--methods", nargs="+", default=["dtp", "bp"],
                        choices=dtp_eqx.TRAIN_METHODS, help="methods to compare")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per method (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with mnist.npz (default: DTP_EQX_DATA, cache, download)")
    parser.add_argument("--out", default=None, help="results file (default under benchmarks/results)")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be positive, got {args.epochs}")
    data = dtp_eqx.load_mnist(args.data_dir)
    runs = {}
    for method in args.methods:
        config = dtp_eqx.paper_config(args.experiment, method, epochs=args.epochs)
        net = dtp_eqx.paper_network(args.experiment, key=jax.random.key(args.seed))
        start = time.perf_counter()
        net, history = dtp_eqx.fit(net, data, config, key=jax.random.key(args.seed + 1))
        wall = time.perf_counter() - start
        seconds = history["seconds"]
        per_epoch = float(np.median(seconds[1:])) if len(seconds) > 1 else float(seconds[0])
        runs[method] = {
            "config": dataclasses.asdict(config),
            "test_error": float(history["test_error"][-1]),
            "valid_error": float(history["valid_error"][-1]),
            "train_error": float(history["train_error"][-1]),
            "seconds_first_epoch": float(seconds[0]),
            "seconds_per_epoch": per_epoch,
            "wall_seconds": wall,
            "history": {k: np.asarray(v).tolist() for k, v in history.items()},
        }
    print(f"\n{args.experiment}, {args.epochs} epochs, seed {args.seed}, {jax.devices()[0]}")
    print(f"{'method':<15}{'test error':>12}{'s/epoch':>10}{'first epoch s':>15}")
    for method, run in runs.items():
        print(f"{method:<15}{run['test_error']:>12.2%}{run['seconds_per_epoch']:>10.2f}"
              f"{run['seconds_first_epoch']:>15.2f}")
    if "dtp" in runs:
        for method, run in runs.items():
            if method != "dtp":
                ratio = runs["dtp"]["seconds_per_epoch"] / run["seconds_per_epoch"]
                print(f"seconds per epoch, dtp / {method}: {ratio:.2f}")
    result = {
        "experiment": args.experiment,
        "data": repr(data),
        "epochs": args.epochs,
        "seeds": {"init": args.seed, "train": args.seed + 1},
        "seconds_per_epoch": "median over epochs 2.. of training time (evaluation excluded)",
        "runs": runs,
        "provenance": provenance(),
    }
    out = args.out or f"benchmarks/results/{args.experiment}-{args.epochs}ep.json"
    print(f"wrote {write_json(out, result)}")


if __name__ == "__main__":
    main()
