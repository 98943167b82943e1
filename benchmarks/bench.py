"""Speed and scale of dtp_eqx's compiled training on this machine, in one run.

Measures, with compilation timed separately and excluded from throughput:

1. examples per second of a DTP inverse epoch, a DTP forward epoch and a back-prop
   epoch (batch 100, the original settings) on the 7x240 tanh network, the stochastic
   784-200-200-10 network (back-prop there is straight-through) and the CIFAR-10
   3072-1000x3-10 network, and the ratio DTP (inverse + forward epoch) / BP epoch;
2. throughput of N seeds vmapped in one program against the same N runs one after
   another (N = 1, 4, 8, 16; a full alternate-epoch DTP epoch on the 7x240 network);
3. XLA's count of floating-point operations per minibatch step (its cost analysis of
   the compiled scan body), whose DTP/BP ratio is what the time ratio would be if every
   operation ran at the same speed;
4. memory: XLA's own account of each compiled epoch (arguments + outputs +
   temporaries) and the process's peak resident memory;
5. time to first step: the first call of each epoch program (tracing + compilation +
   one epoch) minus a steady-state epoch;
6. achieved GFLOP/s of every epoch (XLA's FLOPs per step x steps / seconds) beside what
   this machine reaches, in the same run, on the same matmul shapes alone (a jitted chain
   of the network's batch-100 layer matmuls) and on one 2048 x 2048 matmul, with the
   fraction of the chain's throughput that each epoch reaches.

Inputs are random arrays of the datasets' shapes: throughput does not depend on the
pixel values, and the benchmark needs no data files. Results go to
benchmarks/results/bench-DEVICE.json with the commit, date, device and versions, and a
table is printed.

    python benchmarks/bench.py            # about 3-4 minutes on 2 CPU cores
    python benchmarks/bench.py --quick    # seconds: a smoke test of the script
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import dtp_eqx
from dtp_eqx import _train
from dtp_eqx._provenance import provenance, write_json

# network name -> (paper experiment, back-prop baseline, training examples per epoch)
NETWORKS = {
    "7x240 tanh": ("mnist-deep", "bp", 10_000),
    "stochastic 200-200": ("stochastic", "ste", 10_000),
    "cifar 3x1000 tanh": ("cifar10", "bp", 3_000),
}
GOALS = {"dtp_over_bp": 2.0, "vmap_speedup_at_8": 3.0, "compile_seconds_7x240": 5.0,
         "fraction_of_matmul_peak": 0.75}
BATCH = 100


def _synthetic(n: int, n_in: int, n_classes: int, key):
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (n, n_in), jnp.float32)
    return x, jax.random.randint(ky, (n,), 0, n_classes, jnp.int32)


def _block(out):
    jax.block_until_ready(eqx.filter(out, eqx.is_array))
    return out


def _time_calls(fn, repeats: int) -> tuple[float, float]:
    """(first call seconds, median of `repeats` further calls)."""
    start = time.perf_counter()
    _block(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def _compiled_costs(model, opt_state, x, y, key, config, phase) -> tuple[int | None, float | None]:
    """XLA's account of one compiled epoch: its memory (arguments + outputs +
    temporaries, bytes) and its floating-point operations."""
    hyper = {k: jnp.float32(v) for k, v in config.hyperparameters().items() if k != "sigma"}
    try:
        compiled = _train._train_epoch.lower(
            model, opt_state, x, y, key, jnp.float32(config.sigma), hyper, config, phase, None
        ).compile().compiled
    except Exception:  # noqa: BLE001 - not every backend can compile ahead of time
        return None, None
    try:
        stats = compiled.memory_analysis()
        memory = int(stats.argument_size_in_bytes + stats.output_size_in_bytes
                     + stats.temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports memory
        memory = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"])
    except Exception:  # noqa: BLE001
        flops = None
    return memory, flops


def _gflops_of(fn, args, flops: float, repeats: int) -> float:
    """GFLOP/s of the jitted `fn(*args)`, which does `flops` operations (median time)."""
    compiled = jax.jit(fn)
    _, steady = _time_calls(lambda: compiled(*args), repeats)
    return flops / steady / 1e9


def matmul_gflops(sizes: tuple[int, ...], repeats: int, steps: int = 200) -> dict:
    """What this machine reaches on a network's layer matmuls alone, and on a large one.

    `chain`: `steps` passes of a batch of 100 through the matmuls of layer sizes `sizes`
    (no activations), each pass scaled by a scalar carried from the one before, so XLA
    can neither hoist nor skip a pass; `large`: one 2048 x 2048 @ 2048 x 2048 product.
    """
    keys = jax.random.split(jax.random.key(5), len(sizes))
    ws = [jax.random.normal(k, (a, b), jnp.float32) / np.sqrt(a)
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
    x = jax.random.uniform(keys[0], (BATCH, sizes[0]), jnp.float32)

    def chain(x, ws):
        def body(scale, _):
            h = x * scale
            for w in ws:
                h = h @ w
            return scale + 1e-6 * jnp.mean(h), None

        return jax.lax.scan(body, jnp.float32(1.0), None, length=steps)[0]

    chain_flops = 2.0 * BATCH * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * steps
    big = jax.random.normal(keys[-1], (2048, 2048), jnp.float32)
    return {
        "chain_gflops": _gflops_of(chain, (x, ws), chain_flops, repeats),
        "large_gflops": _gflops_of(lambda a: a @ a, (big,), 2.0 * 2048**3, repeats),
        "sizes": list(sizes),
    }


def bench_network(name: str, repeats: int, n_train: int | None) -> dict:
    experiment, bp_method, default_n = NETWORKS[name]
    n = n_train or default_n
    net = dtp_eqx.paper_network(experiment, key=jax.random.key(0))
    x, y = _synthetic(n, net.in_features, net.n_classes, jax.random.key(1))
    key = jax.random.key(2)
    row = {"examples_per_epoch": n}
    phases = (("inverse", "dtp"), ("forward", "dtp"), ("bp", bp_method))
    for phase, method in phases:
        config = dtp_eqx.paper_config(experiment, method)
        opt_state = dtp_eqx.init_opt_state(net, config)

        def run(config=config, phase=phase, opt_state=opt_state):
            return dtp_eqx.train_epoch(net, opt_state, x, y, key=key, config=config, phase=phase)

        first, steady = _time_calls(run, repeats)
        memory, flops = _compiled_costs(net, opt_state, x, y, key, config, phase)
        row[phase] = {
            "examples_per_second": n / steady,
            "seconds_per_epoch": steady,
            "first_call_seconds": first,
            "compile_seconds": max(first - steady, 0.0),
            "compiled_bytes": memory,
            "xla_flops_per_step": flops,
            "achieved_gflops": (None if flops is None
                                else flops * (n // config.batch_size) / steady / 1e9),
        }
    dtp = row["inverse"]["seconds_per_epoch"] + row["forward"]["seconds_per_epoch"]
    row["dtp_over_bp"] = dtp / row["bp"]["seconds_per_epoch"]
    flops = [row[p]["xla_flops_per_step"] for p in ("inverse", "forward", "bp")]
    row["dtp_over_bp_flops"] = None if None in flops else (flops[0] + flops[1]) / flops[2]
    row["dtp_first_step_seconds"] = (
        row["inverse"]["compile_seconds"] + row["forward"]["compile_seconds"]
    )
    row["matmul"] = matmul_gflops(net.sizes, repeats)
    for phase in ("inverse", "forward", "bp"):
        achieved = row[phase]["achieved_gflops"]
        row[phase]["fraction_of_chain"] = (
            None if achieved is None else achieved / row["matmul"]["chain_gflops"])
    return row


def bench_seeds(sizes: tuple[int, ...], repeats: int, n_train: int) -> dict:
    """N seeds vmapped in one program against N runs one after another."""
    config = dtp_eqx.paper_config("mnist-deep", "dtp")
    x, y = _synthetic(n_train, 784, 10, jax.random.key(1))

    def epoch(model, opt_state, key):
        for i, phase in enumerate(config.phases()):
            model, opt_state, _ = dtp_eqx.train_epoch(
                model, opt_state, x, y, key=jax.random.fold_in(key, i) if key.ndim == 0
                else jax.vmap(lambda k: jax.random.fold_in(k, i))(key),
                config=config, phase=phase,
            )
        return model, opt_state

    single = dtp_eqx.paper_network("mnist-deep", key=jax.random.key(0))
    single_state = dtp_eqx.init_opt_state(single, config)
    _, one = _time_calls(lambda: epoch(single, single_state, jax.random.key(3)), repeats)
    rows = {}
    for n in sizes:
        models = eqx.filter_vmap(lambda k: dtp_eqx.paper_network("mnist-deep", key=k))(
            jax.random.split(jax.random.key(0), n)
        )
        states = dtp_eqx.init_opt_state(models, config)
        keys = jax.random.split(jax.random.key(3), n)
        first, vmapped = _time_calls(lambda: epoch(models, states, keys), repeats)

        def sequential(n=n):
            out = None
            for i in range(n):
                out = _block(epoch(single, single_state, jax.random.key(10 + i)))
            return out

        start = time.perf_counter()
        sequential()
        seq = time.perf_counter() - start
        rows[n] = {
            "vmapped_seconds": vmapped,
            "sequential_seconds": seq,
            "vmapped_examples_per_second": n * n_train / vmapped,
            "sequential_examples_per_second": n * n_train / seq,
            "speedup": seq / vmapped,
            "vmapped_first_call_seconds": first,
        }
    return {"examples_per_epoch": n_train, "one_seed_epoch_seconds": one, "by_n": rows}


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def _device_peak_mb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_table(result: dict) -> None:
    print(f"\ndtp_eqx benchmark on {result['provenance']['device']} "
          f"({result['provenance']['cpu_count']} CPUs), jax {result['provenance']['jax']}")
    print(f"\n{'network':<20}{'phase':<10}{'examples/s':>12}{'s/epoch':>9}"
          f"{'compile s':>11}{'compiled MB':>13}{'MFLOP/step':>13}{'GFLOP/s':>9}"
          f"{'of chain':>10}")
    for name, row in result["networks"].items():
        for phase in ("inverse", "forward", "bp"):
            r = row[phase]
            gf = "" if r["xla_flops_per_step"] is None else f"{r['xla_flops_per_step'] / 1e6:.0f}"
            mb = "" if r["compiled_bytes"] is None else f"{r['compiled_bytes'] / 2**20:.1f}"
            rate = "" if r["achieved_gflops"] is None else f"{r['achieved_gflops']:.1f}"
            part = "" if r["fraction_of_chain"] is None else f"{r['fraction_of_chain']:.0%}"
            print(f"{name:<20}{phase:<10}{r['examples_per_second']:>12.0f}"
                  f"{r['seconds_per_epoch']:>9.3f}{r['compile_seconds']:>11.2f}{mb:>13}{gf:>13}"
                  f"{rate:>9}{part:>10}")
        m = row["matmul"]
        print(f"{name:<20}{'matmuls':<10}  the same layer matmuls alone: "
              f"{m['chain_gflops']:.1f} GFLOP/s; one 2048x2048 matmul: "
              f"{m['large_gflops']:.1f} GFLOP/s")
        flop_ratio = row["dtp_over_bp_flops"]
        print(f"{name:<20}{'DTP/BP':<10}{row['dtp_over_bp']:>12.2f}   "
              f"(goal <= {GOALS['dtp_over_bp']}: {_mark(row['dtp_over_bp'] <= GOALS['dtp_over_bp'])}"
              + ("" if flop_ratio is None else f"; FLOP ratio {flop_ratio:.2f}") + ")")
    seeds = result["seeds"]
    print(f"\nseeds (7x240 DTP epoch, {seeds['examples_per_epoch']} examples; one seed "
          f"{seeds['one_seed_epoch_seconds']:.3f} s)")
    print(f"{'N':>4}{'vmapped s':>11}{'sequential s':>14}{'vmapped ex/s':>14}"
          f"{'sequential ex/s':>17}{'speed-up':>10}")
    for n, r in seeds["by_n"].items():
        print(f"{n:>4}{r['vmapped_seconds']:>11.3f}{r['sequential_seconds']:>14.3f}"
              f"{r['vmapped_examples_per_second']:>14.0f}"
              f"{r['sequential_examples_per_second']:>17.0f}{r['speedup']:>10.2f}")
    goals = result["goals"]
    print("\ngoals:")
    for name, goal in goals.items():
        print(f"  {name}: measured {goal['measured']:.2f}, goal {goal['goal']}: "
              f"{_mark(goal['met'])}")
    print(f"peak resident memory {result['memory']['peak_rss_mb']:.0f} MB"
          + ("" if result["memory"]["device_peak_mb"] is None
             else f", device peak {result['memory']['device_peak_mb']:.0f} MB"))
    print(f"wall time {result['wall_seconds']:.0f} s")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one repeat: checks the script, not the speed")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed epochs per measurement after the first (default 3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 8, 16],
                        help="ensemble sizes to compare (default 1 4 8 16)")
    parser.add_argument("--out", default=None,
                        help="results file (default benchmarks/results/bench-DEVICE.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, got {args.repeats}")
    if any(n < 1 for n in args.seeds):
        parser.error(f"--seeds must be positive, got {args.seeds}")
    repeats = 1 if args.quick else args.repeats
    start = time.perf_counter()
    networks = {}
    for name in NETWORKS:
        print(f"timing {name} ...", flush=True)
        networks[name] = bench_network(name, repeats, 200 if args.quick else None)
    print("timing seed ensembles ...", flush=True)
    seeds = bench_seeds(tuple(args.seeds[:2] if args.quick else args.seeds), repeats,
                        200 if args.quick else 2_000)
    deep = networks["7x240 tanh"]
    n8 = seeds["by_n"].get(8)
    goals = {
        "dtp_over_bp (7x240)": {"measured": deep["dtp_over_bp"], "goal": "<= 2.0",
                                "met": deep["dtp_over_bp"] <= GOALS["dtp_over_bp"]},
        "first-step compile s (7x240, inverse + forward)": {
            "measured": deep["dtp_first_step_seconds"], "goal": "<= 5.0",
            "met": deep["dtp_first_step_seconds"] <= GOALS["compile_seconds_7x240"]},
    }
    dtp_part = [deep[p]["fraction_of_chain"] for p in ("inverse", "forward")]
    if None not in dtp_part:
        goals["DTP epochs' GFLOP/s / layer matmuls alone (7x240, the slower pass)"] = {
            "measured": min(dtp_part), "goal": ">= 0.75",
            "met": min(dtp_part) >= GOALS["fraction_of_matmul_peak"]}
    if n8 is not None:
        goals["8 seeds vmapped / sequential throughput"] = {
            "measured": n8["speedup"], "goal": ">= 3.0",
            "met": n8["speedup"] >= GOALS["vmap_speedup_at_8"]}
    result = {
        "quick": args.quick,
        "repeats": repeats,
        "batch_size": 100,
        "data": "random inputs and labels with the datasets' shapes",
        "networks": networks,
        "seeds": seeds,
        "goals": goals,
        "memory": {"peak_rss_mb": _peak_rss_mb(), "device_peak_mb": _device_peak_mb()},
        "wall_seconds": time.perf_counter() - start,
        "provenance": {**provenance(), "machine": platform.machine()},
    }
    print_table(result)
    device = jax.devices()[0].platform + ("-quick" if args.quick else "")
    out = args.out or f"benchmarks/results/bench-{device}.json"
    print(f"wrote {write_json(out, result)}")
    return result


if __name__ == "__main__":
    main()
