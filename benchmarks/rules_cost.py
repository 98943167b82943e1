"""What each feedback-training rule costs against back-prop, in one run.

For the deep 7x240 tanh MNIST network and the small CIFAR-10 CNN of the cifar10-cnn
experiment (3072 -> conv 3->16, pool -> conv 16->32, pool -> 10), times one
per-batch epoch (feedback and forward updates on every minibatch) of DTP with each
feedback rule of `dtp_eqx.FEEDBACK_RULES`, L-DRL also with 10 noise samples per step and
with 20 feedback iterations per minibatch (the order of Ernoult et al.'s VGG settings),
and one back-prop epoch, on the same random inputs, with XLA's count of floating-point
operations per example (its cost analysis of the compiled epoch). Prints a table and
writes benchmarks/results/rules-cost-DEVICE.json with the commit, date, device and
versions. Compilation is timed apart from the steady-state epochs.

    python benchmarks/rules_cost.py           # about 10 minutes on 2 CPU cores
    python benchmarks/rules_cost.py --quick   # a smoke test of the script
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402 - the timing and cost helpers of the main benchmark

import dtp_eqx  # noqa: E402
from dtp_eqx._provenance import provenance, write_json  # noqa: E402

# name, settings (TrainConfig fields beside the method, schedule and rule)
VARIANTS = (
    ("bp", dict(method="bp")),
    ("dtp reconstruction", dict(feedback_rule="reconstruction")),
    ("dtp drl", dict(feedback_rule="drl")),
    ("dtp l-drl", dict(feedback_rule="l-drl")),
    ("dtp l-drl, 10 samples", dict(feedback_rule="l-drl", feedback_samples=10)),
    ("dtp l-drl, 20 iterations", dict(feedback_rule="l-drl", feedback_iterations=20)),
)
BATCH = 128


def _network(name: str, key):
    return dtp_eqx.paper_network(name, key=key)


def bench_rules(name: str, n: int, repeats: int) -> dict:
    net = _network(name, jax.random.key(0))
    x, y = bench._synthetic(n, net.in_features, net.n_classes, jax.random.key(1))
    key = jax.random.key(2)
    base = dtp_eqx.TrainConfig(batch_size=BATCH, schedule="per-batch", inverse_warmup=0,
                               optimizer="adam", lr_forward=1e-3, lr_feedback=1e-4,
                               top_step=0.1, sigma=0.1)
    rows = {}
    for label, fields in VARIANTS:
        config = dataclasses.replace(base, **fields)
        phase = "bp" if config.method == "bp" else "per-batch"
        opt_state = dtp_eqx.init_opt_state(net, config)

        def run(config=config, phase=phase, opt_state=opt_state):
            return dtp_eqx.train_epoch(net, opt_state, x, y, key=key, config=config,
                                       phase=phase)

        first, steady = bench._time_calls(run, repeats)
        _, flops = bench._compiled_costs(net, opt_state, x, y, key, config, phase)
        rows[label] = {
            "config": {k: v for k, v in dataclasses.asdict(config).items()
                       if k in ("method", "feedback_rule", "feedback_samples",
                                "feedback_iterations", "schedule", "batch_size")},
            "seconds_per_epoch": steady,
            "examples_per_second": n / steady,
            "compile_seconds": max(first - steady, 0.0),
            # XLA's cost analysis counts a loop body once, so the FLOPs of several
            # feedback iterations (a scan in each step) are not counted
            "xla_flops_per_example": (None if flops is None or config.feedback_iterations > 1
                                      else flops / BATCH),
        }
        print(f"  {name} {label}: {steady:.2f} s/epoch", flush=True)
    bp = rows["bp"]
    for row in rows.values():
        row["time_over_bp"] = row["seconds_per_epoch"] / bp["seconds_per_epoch"]
        row["flops_over_bp"] = (None if None in (row["xla_flops_per_example"],
                                                 bp["xla_flops_per_example"])
                                else row["xla_flops_per_example"] / bp["xla_flops_per_example"])
    return {"examples_per_epoch": n, "shapes": [list(s) for s in net.shapes], "rows": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--out", help="results file (default benchmarks/results/"
                                      "rules-cost-DEVICE.json)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sizes = {"mnist-deep": 256, "cifar10-cnn": 256} if args.quick else {
        "mnist-deep": 12800, "cifar10-cnn": 1280}
    repeats = 1 if args.quick else 3
    result = {"networks": {name: bench_rules(name, n, repeats) for name, n in sizes.items()},
              "repeats": repeats, "quick": args.quick,
              "inputs": "random arrays of the datasets' shapes (throughput does not depend "
                        "on pixel values)"}
    result["wall_seconds"] = time.perf_counter() - start
    result["provenance"] = provenance()
    device = jax.devices()[0].platform
    out = Path(args.out) if args.out else (
        Path(__file__).parent / "results" / f"rules-cost-{device}{'-quick' if args.quick else ''}.json")
    write_json(out, result)
    print(f"\n{'network':12} {'variant':26} {'s/epoch':>8} {'x BP time':>10} {'x BP FLOPs':>11}")
    for name, net in result["networks"].items():
        for label, row in net["rows"].items():
            flops = row["flops_over_bp"]
            print(f"{name:12} {label:26} {row['seconds_per_epoch']:8.2f} "
                  f"{row['time_over_bp']:10.2f} {'-' if flops is None else f'{flops:.2f}':>11}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
