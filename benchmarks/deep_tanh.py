"""Train the paper's deep tanh network (784-240x7-10) by DTP and by back-prop on MNIST.

Original settings (paper notes, section 2): alternate-epoch schedule, centered RMSprop with
momentum, orthogonal initialisation; DTP eta = 0.327736 (top_step = eta / 100),
lr forward 0.0148893, lr inverse 0.00501149, sigma 0.359830; back-prop lr 8.04437e-4.
Writes benchmarks/results/deep_tanh.json with the curves, seconds per epoch and provenance.

    python benchmarks/deep_tanh.py --epochs 10 [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

import dtp_eqx
from dtp_eqx._provenance import provenance, write_json

SIZES = (784,) + (240,) * 7 + (10,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per method (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--data-dir", default=None, help="folder with mnist.npz")
    parser.add_argument(
        "--out", default="benchmarks/results/deep_tanh.json", help="results file to write"
    )
    args = parser.parse_args()
    data = dtp_eqx.load_mnist(args.data_dir, download=args.data_dir is None)
    configs = {
        "dtp": dtp_eqx.TrainConfig(method="dtp", epochs=args.epochs),
        "bp": dtp_eqx.TrainConfig(method="bp", epochs=args.epochs, lr_forward=8.04437e-4),
    }
    runs = {}
    for method, config in configs.items():
        net = dtp_eqx.DTPNetwork(SIZES, activation="tanh", key=jax.random.key(args.seed))
        start = time.perf_counter()
        net, history = dtp_eqx.fit(net, data, config, key=jax.random.key(args.seed + 1))
        wall = time.perf_counter() - start
        seconds = history["seconds"]
        runs[method] = {
            "config": dataclasses.asdict(config),
            "final_test_error": float(history["test_error"][-1]),
            "final_valid_error": float(history["valid_error"][-1]),
            "final_train_error": float(history["train_error"][-1]),
            "seconds_first_epoch": float(seconds[0]),
            "seconds_per_epoch_median_after_first": float(np.median(seconds[1:]))
            if len(seconds) > 1 else float(seconds[0]),
            "wall_seconds": wall,
            "history": {k: np.asarray(v).tolist() for k, v in history.items()},
        }
        print(
            f"{method}: test error {runs[method]['final_test_error']:.2%} after "
            f"{args.epochs} epochs, {runs[method]['seconds_per_epoch_median_after_first']:.2f} "
            "s/epoch (median, after the first)"
        )
    ratio = (
        runs["dtp"]["seconds_per_epoch_median_after_first"]
        / runs["bp"]["seconds_per_epoch_median_after_first"]
    )
    print(f"DTP / BP seconds per epoch: {ratio:.2f}")
    result = {
        "what": "784-240x7-10 tanh on MNIST, DTP vs BP, original settings",
        "data": repr(data),
        "seeds": {"init": args.seed, "train": args.seed + 1},
        "epochs": args.epochs,
        "dtp_over_bp_seconds_per_epoch": ratio,
        "runs": runs,
        "provenance": provenance(),
    }
    print(f"wrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
