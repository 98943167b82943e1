"""Why our small matmuls run below what this CPU does with them: every variant, one run.

Issue 15, point 1. The 7x240 network's training steps are chains of batch-100 matmuls
(100 x 240 @ 240 x 240 and their transposes). This script measures, each variant in a
fresh process (XLA reads its flags once, at start-up), one after another:

* `chain`: a jitted scan of 200 forward passes of a batch of 100 through the network's
  layer matmuls (x @ W), in GFLOP/s, as `benchmarks/bench.py` measures it;
* `chain_linear`: the same chain written the Equinox way, `jax.vmap` over single-example
  `eqx.nn.Linear` layers (the layout question of jax-ml/jax#19327 and equinox#636);
* `dtp` and `bp`: training examples per second of a compiled per-batch DTP epoch and a
  back-prop epoch (`paper_config("mnist-deep", ...)`, 5,000 random examples, batch 100).

Variants: XLA:CPU flags of the installed jaxlib (its XNNPACK, YNNPACK and oneDNN dot
paths, Eigen's threading, the concurrency scheduler, fast math), unrolling of the epoch
scan, and JAX's PRNG implementation. Besides the variants:

* `sizes`: GFLOP/s of an (rows x 240) @ (240 x 240) matmul chain for rows 100 ... 3200,
  in JAX and, when the peer benchmark's venv (benchmarks/peers/.venv, with torch) is
  there, in PyTorch with 1 and 2 threads: where each library starts to use both cores;
* `one_member`: a one-member ensemble epoch through `train_epoch` (which runs the
  single-model program), through the vmapped program it used before, and a single model.

Results: benchmarks/results/xla-cpu-variants.json and a table beside it (.md), with
provenance. Takes about 12 minutes on 2 CPU cores; run it on a quiet machine.

    python benchmarks/xla_cpu_variants.py
    python benchmarks/xla_cpu_variants.py --quick    # a smoke test, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE / "peers" / ".venv" / "bin" / "python"
SIZES = (784,) + (240,) * 7 + (10,)
BATCH = 100

# name -> (XLA_FLAGS, code options); flags documented in XLA's debug options
VARIANTS = {
    "default": ("", {}),
    "no XNNPACK": ("--xla_cpu_use_xnnpack=false", {}),
    "XNNPACK dot fusion": ("--xla_cpu_experimental_xnn_fusion_type=dot", {}),
    "XNNPACK dot+eltwise+reduce": (
        "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce", {}),
    "XNNPACK graph fusion (greedy)": (
        "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY", {}),
    "XNNPACK dot, no cost model": (
        "--xla_cpu_experimental_xnn_fusion_type=dot "
        "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_BYPASS_COST_MODEL",
        {}),
    "YNNPACK dot fusion": ("--xla_cpu_experimental_ynn_fusion_type=dot", {}),
    "oneDNN thunks": ("--xla_cpu_use_onednn=true", {}),
    "oneDNN dot fusion": (
        "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot", {}),
    "Eigen single-threaded": ("--xla_cpu_multi_thread_eigen=false", {}),
    "no concurrency scheduler": ("--xla_cpu_enable_concurrency_optimized_scheduler=false", {}),
    "fast math": ("--xla_cpu_enable_fast_math=true", {}),
    "scan unroll 2": ("", {"unroll": 2}),
    "scan unroll 5": ("", {"unroll": 5}),
    "PRNG rbg": ("", {"prng": "rbg"}),
}


def _median_seconds(fn, repeats: int) -> float:
    import equinox as eqx
    import jax

    jax.block_until_ready(eqx.filter(fn(), eqx.is_array))  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(eqx.filter(fn(), eqx.is_array))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child(options: dict, repeats: int, n_train: int) -> dict:
    """The measurements of one variant, in this (fresh) process."""
    import jax

    if "prng" in options:
        jax.config.update("jax_default_prng_impl", options["prng"])
    if "unroll" in options:  # every lax.scan of this process, the epoch scan included
        scan = jax.lax.scan
        jax.lax.scan = lambda *a, **k: scan(*a, **{"unroll": options["unroll"], **k})
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    import dtp_eqx

    steps = 200
    keys = jax.random.split(jax.random.key(5), len(SIZES))
    ws = [jax.random.normal(k, (a, b), jnp.float32) / np.sqrt(a)
          for k, a, b in zip(keys, SIZES[:-1], SIZES[1:])]
    linears = [eqx.nn.Linear(a, b, use_bias=False, key=k)
               for k, a, b in zip(keys, SIZES[:-1], SIZES[1:])]
    x = jax.random.uniform(keys[0], (BATCH, SIZES[0]), jnp.float32)
    flops = 2.0 * BATCH * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:])) * steps

    def chain(layer_fn):
        def run(x, layers):
            def body(scale, _):
                h = x * scale
                for layer in layers:
                    h = layer_fn(layer, h)
                return scale + 1e-6 * jnp.mean(h), None

            return jax.lax.scan(body, jnp.float32(1.0), None, length=steps)[0]

        return eqx.filter_jit(run)

    explicit, equinox_style = chain(lambda w, h: h @ w), chain(lambda l, h: jax.vmap(l)(h))
    out = {
        "chain_gflops": flops / _median_seconds(lambda: explicit(x, ws), repeats) / 1e9,
        "chain_linear_gflops":
            flops / _median_seconds(lambda: equinox_style(x, linears), repeats) / 1e9,
    }
    kx, ky = jax.random.split(jax.random.key(1))
    xt = jax.random.uniform(kx, (n_train, 784), jnp.float32)
    yt = jax.random.randint(ky, (n_train,), 0, 10, jnp.int32)
    net = dtp_eqx.paper_network("mnist-deep", key=jax.random.key(0))
    for name, method, phase, extra in (("dtp", "dtp", "per-batch", {"schedule": "per-batch"}),
                                       ("bp", "bp", "bp", {})):
        config = dtp_eqx.paper_config("mnist-deep", method, **extra)
        state = dtp_eqx.init_opt_state(net, config)
        seconds = _median_seconds(lambda: dtp_eqx.train_epoch(
            net, state, xt, yt, key=jax.random.key(3), config=config, phase=phase), repeats)
        out[f"{name}_examples_per_second"] = n_train / seconds
    return out


def one_member(repeats: int, n_train: int) -> dict:
    """Epoch seconds of a single model, a one-member ensemble through `train_epoch`, and
    the same ensemble through the vmapped program (what `train_epoch` ran before)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import dtp_eqx
    from dtp_eqx import _train

    kx, ky = jax.random.split(jax.random.key(1))
    xt = jax.random.uniform(kx, (n_train, 784), jnp.float32)
    yt = jax.random.randint(ky, (n_train,), 0, 10, jnp.int32)
    rows = {}
    for phase in ("inverse", "forward"):
        config = dtp_eqx.paper_config("mnist-deep", "dtp")
        net = dtp_eqx.paper_network("mnist-deep", key=jax.random.key(0))
        one = eqx.filter_vmap(lambda k: dtp_eqx.paper_network("mnist-deep", key=k))(
            jax.random.split(jax.random.key(0), 1))
        state, states = dtp_eqx.init_opt_state(net, config), dtp_eqx.init_opt_state(one, config)
        hyper = {k: jnp.full(1, v, jnp.float32) for k, v in config.hyperparameters().items()
                 if k != "sigma"}
        key, keys = jax.random.key(3), jax.random.split(jax.random.key(3), 1)
        sigma = jnp.full(1, config.sigma, jnp.float32)
        single = _median_seconds(lambda: dtp_eqx.train_epoch(
            net, state, xt, yt, key=key, config=config, phase=phase), repeats)
        public = _median_seconds(lambda: dtp_eqx.train_epoch(
            one, states, xt, yt, key=keys, config=config, phase=phase), repeats)
        vmapped = _median_seconds(lambda: _train._train_epoch_ensemble(
            one, states, xt, yt, keys, sigma, hyper, config, phase, None), repeats)
        rows[phase] = {"single_seconds": single, "train_epoch_seconds": public,
                       "vmapped_program_seconds": vmapped,
                       "train_epoch_over_single": single / public,
                       "vmapped_over_single": single / vmapped}
    return rows


SIZE_SCRIPT = r"""
import json, statistics, sys, time
rows, lib = [int(r) for r in sys.argv[2].split(",")], sys.argv[1]
def seconds(f):
    f(); ts = []
    for _ in range(7):
        s = time.perf_counter(); f(); ts.append(time.perf_counter() - s)
    return statistics.median(ts)
out = {}
for b in rows:
    steps = max(20, 20000 // b)
    if lib == "jax":
        import jax
        a = jax.random.normal(jax.random.key(0), (b, 240))
        w = jax.random.normal(jax.random.key(1), (240, 240)) / 16
        f = jax.jit(lambda a, w: jax.lax.fori_loop(0, steps, lambda i, h: h @ w, a))
        t = seconds(lambda: f(a, w).block_until_ready())
    else:
        import torch
        torch.set_num_threads(int(sys.argv[3]))
        a, w = torch.randn(b, 240), torch.randn(240, 240) / 16
        def f():
            h = a
            for _ in range(steps):
                h = h @ w
            return h
        t = seconds(f)
    out[b] = 2 * b * 240 * 240 * steps / t / 1e9
print(json.dumps(out))
"""


def _run(cmd: list[str], env: dict | None = None, timeout: int = 900) -> dict:
    """The last line of `cmd`'s output as JSON, or {"error": ...} when it failed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def sizes(rows: tuple[int, ...]) -> dict:
    arg = ",".join(map(str, rows))
    out = {"rows": list(rows), "jax": _run([sys.executable, "-c", SIZE_SCRIPT, "jax", arg])}
    if PEER_PYTHON.exists():
        for threads in (1, 2):
            out[f"torch_{threads}_thread"] = _run(
                [str(PEER_PYTHON), "-c", SIZE_SCRIPT, "torch", arg, str(threads)])
        out["torch_version"] = subprocess.run(
            [str(PEER_PYTHON), "-c", "import torch; print(torch.__version__)"],
            capture_output=True, text=True).stdout.strip() or None
    else:
        out["torch"] = f"not measured: no {PEER_PYTHON} (bash benchmarks/peers/setup.sh)"
    return out


def markdown(result: dict) -> str:
    p = result["provenance"]
    lines = [
        "# XLA:CPU variants for the 7x240 network's small matmuls", "",
        f"Made by `benchmarks/xla_cpu_variants.py` on {p['date']} (commit {p['commit']}, "
        f"jax {p['jax']}, {p['cpu_count']} CPUs, {p['platform']}; wall time "
        f"{result['wall_seconds']:.0f} s). Each variant in a fresh process; medians of "
        f"{result['settings']['repeats']} calls after a warm-up.", "",
        "| variant | XLA_FLAGS / option | chain GFLOP/s | chain, vmap(eqx.nn.Linear) | "
        "DTP per-batch ex/s | BP ex/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in result["variants"].items():
        how = row["flags"] or ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-"
        if "error" in row:
            lines.append(f"| {name} | `{how}` | failed: {row['error']} | | | |")
            continue
        lines.append(
            f"| {name} | `{how}` | {row['chain_gflops']:.0f} | {row['chain_linear_gflops']:.0f} "
            f"| {row['dtp_examples_per_second']:.0f} | {row['bp_examples_per_second']:.0f} |")
    s = result["sizes"]
    libs = [k for k in s if k == "jax" or k.endswith("_thread")]
    lines += ["", "GFLOP/s of a chain of (rows x 240) @ (240 x 240) matmuls:", "",
              "| rows | " + " | ".join(libs) + " |", "|---:|" + "---:|" * len(libs)]
    for r in s["rows"]:
        cells = [("-" if "error" in s[lib] else f"{s[lib][str(r)]:.0f}") for lib in libs]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    if "torch" in s:
        lines += ["", s["torch"]]
    lines += ["", "One-member ensemble, seconds per epoch "
              f"({result['settings']['train_examples']:,} examples):", "",
              "| phase | single model | `train_epoch`, 1 member | vmapped program, 1 member |",
              "|---|---:|---:|---:|"]
    for phase, row in result["one_member"].items():
        lines.append(f"| {phase} | {row['single_seconds']:.3f} | "
                     f"{row['train_epoch_seconds']:.3f} | {row['vmapped_program_seconds']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 variants")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="results JSON (default: "
                        "benchmarks/results/xla-cpu-variants.json; --quick: a temp folder)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n_train = 1_000 if args.quick else 5_000
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child), args.repeats, n_train)))
        return {}

    from tqdm.auto import tqdm

    from dtp_eqx._provenance import provenance, write_json

    start = time.perf_counter()
    names = ["default", "scan unroll 2"] if args.quick else list(VARIANTS)
    variants = {}
    for name in tqdm(names, desc="variants"):
        flags, options = VARIANTS[name]
        env = {**os.environ, "XLA_FLAGS": " ".join(
            f for f in (os.environ.get("XLA_FLAGS", ""), flags) if f)}
        row = _run([sys.executable, __file__, "--child", json.dumps(options),
                    "--repeats", str(args.repeats)] + (["--quick"] if args.quick else []),
                   env=env)
        variants[name] = {"flags": flags, "options": options, **row}
    result = {
        "provenance": provenance(),
        "settings": {"repeats": args.repeats, "train_examples": n_train, "batch": BATCH,
                     "sizes": list(SIZES), "chain_passes": 200},
        "variants": variants,
        "sizes": sizes((100, 400) if args.quick else (100, 200, 400, 800, 1600, 3200)),
        "one_member": one_member(args.repeats, n_train),
    }
    result["wall_seconds"] = time.perf_counter() - start
    out = Path(args.out) if args.out else (
        Path(os.environ.get("TMPDIR", "/tmp")) / "xla-cpu-variants.json" if args.quick
        else HERE / "results" / "xla-cpu-variants.json")
    write_json(out, result)
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    main()
