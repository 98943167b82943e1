"""Training throughput of dtp_eqx beside the PyTorch DTP code of Meulemans et al. (2020).

Peer: https://github.com/meulemansalex/theoretical_framework_for_target_propagation at
commit b6ee350, checked out outside this repository (benchmarks/peers/setup.sh; the folder
is given by --peer-dir or PEER_DIR, default /work/peers/meulemans) and run, unmodified,
in a virtual environment of its own (--peer-python or PEER_PYTHON, default
benchmarks/peers/.venv/bin/python). Both are measured in one run of this script, one after
the other, never at the same time, on MNIST from the offline copy (DTP_EQX_DATA).

Measured, in training examples per second (the median of --rounds timed epochs after one
warm-up epoch; the peer's own per-epoch evaluation is outside the timed span):

ours (dtp_eqx, 784-240x7-10 tanh, batch 100, float32, compiled `train_epoch`):
    dtp-per-batch        paper_config("mnist-deep", "dtp", schedule="per-batch"):
                         an inverse and a forward update on every minibatch
    dtp-alternate-epoch  paper_config("mnist-deep", "dtp"): an inverse pass, then a
                         forward pass (one epoch is both passes)
    bp                   paper_config("mnist-deep", "bp")
theirs (their main.run() with their published MNIST configs, final_configs/mnist_DTP.py
and final_configs/mnist_BP.py, the network changed to 7 hidden layers of 240 tanh units):
    dtp  (network_type DTP, their "parallel" training: feedback and forward updates on
          every minibatch, i.e. our per-batch schedule)
    bp   (network_type BP)
  each with two data paths:
    as-run     their own DataLoader over torchvision's MNIST (PIL image -> ToTensor ->
               Normalize per example), with a stand-in MNIST class that reads the
               offline copy instead of downloading
    preloaded  their DataLoader replaced by tensors already in memory (the same
               normalised images, reshuffled every epoch, sliced into minibatches)
  and two precisions: float64 (their published setting, double_precision=True) and
  float32 (the same config with double_precision off).

Results: benchmarks/results/peer-benchmark.json and a table beside it (.md), with the
ratios ours/theirs (above 1: dtp_eqx is faster) and provenance. With --batches (a smoke
test) they go to benchmarks/peers/smoke/ instead, unless --out says otherwise.

    bash benchmarks/peers/setup.sh                       # once
    python benchmarks/peers/run.py                       # the benchmark (a quiet machine)
    python benchmarks/peers/run.py --batches 5 --rounds 1   # smoke test, a minute

Run it with the project's Python (the one with jax and dtp_eqx). Without the peer checkout
or a peer Python that has torch, it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEER_URL = "https://github.com/meulemansalex/theoretical_framework_for_target_propagation"
PEER_COMMIT = "b6ee350"
DEFAULT_PEER_DIR = "/work/peers/meulemans"
DEFAULT_PEER_PYTHON = HERE / ".venv" / "bin" / "python"
PEER_CONFIGS = {"dtp": "final_configs.mnist_DTP", "bp": "final_configs.mnist_BP"}
# what is changed in their published configs, besides epochs, precision and batch size
PEER_OVERRIDES = {
    "num_hidden": 7,        # our network: 784-240x7-10 tanh (theirs: 5 x 256)
    "size_hidden": 240,
    "no_cuda": True,        # CPU (their config asks for CUDA when there is one)
    "evaluate": True,       # never stop "unpromising" runs (training accuracy < 40%
                            # after epoch 5): a short --batches run could trip it
    "save_logs": False,
}
OURS = {  # label -> (method, schedule)
    "dtp-per-batch": ("dtp", "per-batch"),
    "dtp-alternate-epoch": ("dtp", "alternate-epoch"),
    "bp": ("bp", None),
}
RATIOS = {"dtp-per-batch": "dtp", "dtp-alternate-epoch": "dtp", "bp": "bp"}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # their transforms.Normalize


# --- shared helpers (both interpreters) -------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mnist_file(data_dir: str | None) -> Path:
    """The offline mnist.npz, checked against SHA256SUMS beside it when there is one."""
    folder = Path(data_dir or os.environ.get("DTP_EQX_DATA") or ROOT.parent / "shared" / "data")
    path = folder / "mnist.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no mnist.npz in {folder} (set DTP_EQX_DATA or --data-dir)")
    sums = folder / "SHA256SUMS"
    if sums.is_file():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == "mnist.npz":
                if _sha256(path) != parts[0]:
                    raise ValueError(f"{path} does not match its sha256 in {sums}")
    return path


def _peer_commit(peer_dir: Path) -> str:
    """The peer commit: the .peer-commit file setup.sh writes beside an exported tree,
    else the checkout's HEAD, else "unknown"."""
    marker = peer_dir / ".peer-commit"
    if marker.is_file():
        return marker.read_text().strip()
    try:
        return subprocess.check_output(["git", "-C", str(peer_dir), "rev-parse", "HEAD"],
                                       text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _summary(seconds: list[float], examples: int) -> dict:
    median = statistics.median(seconds)
    return {"examples_per_second": examples / median, "median_seconds": median,
            "seconds": seconds, "examples_per_epoch": examples}


# --- the peer side (runs in the peer's interpreter, with torch) -------------------------

def _import_torchvision():
    """torchvision, whose datasets and transforms (pure Python) are all the peer uses.

    PyPI's Linux torchvision is a CUDA build: with a CPU-only torch its C extension does
    not load and `import torchvision` fails registering fake kernels for its ops
    (`operator torchvision::nms does not exist`). Then torchvision is imported without its
    `_meta_registrations` module (only those C ops need it). Returns (module, note)."""
    import types

    try:
        import torchvision
        return torchvision, "imported as is"
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType(
            "torchvision._meta_registrations")
        import torchvision
        return torchvision, ("imported without torchvision._meta_registrations: its C "
                             f"extension does not load with this torch ({error})")


class _TimedLoader:
    """Wraps a loader: times each pass from `iter()` until the loop asks for the item
    after the last batch, i.e. loading plus training of every batch of the epoch, and
    stops after `max_batches` batches when that is set."""

    def __init__(self, loader, max_batches=None, record=None):
        self.loader, self.max_batches = loader, max_batches
        self.record = record  # list of (seconds, examples), or None for no timing
        self.dataset = getattr(loader, "dataset", None)
        self.batch_size = getattr(loader, "batch_size", None)

    def __len__(self):
        n = len(self.loader)
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self):
        start, examples = time.perf_counter(), 0
        # islice stops after max_batches without loading one batch more
        for batch in itertools.islice(self.loader, self.max_batches):
            examples += len(batch[1])
            yield batch
        if self.record is not None:
            self.record.append((time.perf_counter() - start, examples))


class _PreloadedLoader:
    """A DataLoader's stand-in over tensors already in memory: the images as their
    transform makes them (ToTensor then Normalize), reshuffled every pass like
    `DataLoader(shuffle=True)`, in minibatches (the last one ragged, as theirs)."""

    def __init__(self, dataset, batch_size, torch):
        import numpy as np

        self.torch, self.batch_size, self.dataset = torch, batch_size, dataset
        base, indices = dataset, None
        if hasattr(dataset, "indices"):  # a random_split Subset
            base, indices = dataset.dataset, np.asarray(dataset.indices)
        data, targets = base.data, base.targets
        if indices is not None:
            data, targets = data[indices], targets[indices]
        x = data.to(torch.float32).div(255.0).unsqueeze(1)  # ToTensor: (n, 1, 28, 28)
        if getattr(base, "normalize", True):
            x = (x - MNIST_MEAN) / MNIST_STD
        self.x, self.y = x.contiguous(), targets.clone()

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        order = self.torch.randperm(len(self.y))
        for i in range(0, len(self.y), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def _mnist_standin(torchvision, torch, npz_path: Path):
    """torchvision.datasets.MNIST that reads the offline mnist.npz: same data, targets,
    `__getitem__` (PIL image, then the transform) and length, no download."""
    import numpy as np

    cache = {}

    class OfflineMNIST(torchvision.datasets.MNIST):
        def __init__(self, root, train=True, transform=None, target_transform=None,
                     download=False):
            torchvision.datasets.VisionDataset.__init__(
                self, root, transform=transform, target_transform=target_transform)
            self.train = train
            if not cache:
                with np.load(npz_path) as f:
                    cache.update({k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")})
            split = "train" if train else "test"
            self.data = torch.from_numpy(cache[f"x_{split}"].copy())
            self.targets = torch.from_numpy(cache[f"y_{split}"].astype(np.int64))
            steps = getattr(transform, "transforms", [])
            self.normalize = any(type(t).__name__ == "Normalize" for t in steps)

    OfflineMNIST.__name__ = OfflineMNIST.__qualname__ = "MNIST"
    return OfflineMNIST


def _peer_measure(spec: dict, main_mod, run_config, torch, method, loader, double) -> dict:
    """One peer measurement: their main.run() with their published config, our network
    shape and CPU, the training loop's DataLoader wrapped to time each epoch."""
    import contextlib
    import importlib

    config = dict(importlib.import_module(PEER_CONFIGS[method]).config)
    config.update(PEER_OVERRIDES)
    config.update(epochs=1 + spec["rounds"], double_precision=double,
                  out_dir=f"logs/{method}-{loader}-{'float64' if double else 'float32'}")
    if spec["peer_batch_size"]:
        config["batch_size"] = spec["peer_batch_size"]
    record, shapes = [], []
    originals = {"train": main_mod.train, "train_bp": main_mod.train_bp}

    def wrapped(name):
        def train(args, device, train_loader, net, writer, test_loader, summary, val_loader):
            weights = (net.get_forward_parameter_list() if hasattr(
                net, "get_forward_parameter_list") else list(net.parameters()))
            shapes.extend(list(w.shape) for w in weights if w.dim() == 2)
            if loader == "preloaded":
                train_loader = _PreloadedLoader(train_loader.dataset, args.batch_size, torch)
            train_loader = _TimedLoader(train_loader, spec["batches"], record)
            # their per-epoch evaluation is not timed; one batch of it is enough
            test_loader = _TimedLoader(test_loader, 1)
            val_loader = None if val_loader is None else _TimedLoader(val_loader, 1)
            return originals[name](args, device, train_loader, net, writer, test_loader,
                                   summary, val_loader)
        return train

    main_mod.train, main_mod.train_bp = wrapped("train"), wrapped("train_bp")
    torch.set_default_dtype(torch.float32)  # their main only ever sets float64
    log = Path(f"{method}-{loader}-{'float64' if double else 'float32'}.log")
    try:
        with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            run_config._override_cmd_arg(config)
            main_mod.run()
    except Exception:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        main_mod.train, main_mod.train_bp = originals["train"], originals["train_bp"]
        torch.set_default_dtype(torch.float32)
    if len(record) < 2:
        raise RuntimeError(f"their {method} run timed {len(record)} epochs; expected "
                           f"{1 + spec['rounds']} (see {log.resolve()})")
    timed = record[1:]
    if len(timed) < spec["rounds"]:
        print(f"(their {method} run stopped after {len(record)} epochs)", end=" ")
    row = _summary([s for s, _ in timed], timed[0][1])
    row["warmup_seconds"] = record[0][0]
    row["timed_epochs"] = len(timed)
    row["forward_weight_shapes"] = shapes
    row["batch_size"] = config["batch_size"]
    row["dtype"] = "float64" if double else "float32"
    row["config"] = PEER_CONFIGS[method]
    row["changed_in_config"] = {k: config[k] for k in (*PEER_OVERRIDES, "epochs",
                                                       "double_precision", "batch_size")}
    return row


def peer_worker(spec: dict) -> dict:
    """Everything measured on the peer's side, as a dict (runs in the peer's Python)."""
    import numpy
    import torch

    if spec["peer_threads"]:
        torch.set_num_threads(spec["peer_threads"])
    torchvision, tv_note = _import_torchvision()
    peer_dir = Path(spec["peer_dir"]).resolve()
    sys.path.insert(0, str(peer_dir))
    torchvision.datasets.MNIST = _mnist_standin(torchvision, torch, Path(spec["mnist"]))
    workdir = Path(tempfile.mkdtemp(prefix="peer-bench-"))
    os.chdir(workdir)  # their main writes logs/ and results under the working folder
    import main as main_mod  # noqa: E402 - their main.py
    import run_config  # noqa: E402 - their run_config.py: config dict -> command line

    rows = {}
    for method in ("dtp", "bp"):
        for loader in ("as-run", "preloaded"):
            for dtype in spec["precisions"]:
                name = f"{method}/{loader}/{dtype}"
                print(f"  theirs {name} ...", end=" ", flush=True)
                rows[name] = _peer_measure(spec, main_mod, run_config, torch, method,
                                           loader, dtype == "float64")
                print(f"{rows[name]['examples_per_second']:.0f} examples/s", flush=True)
    return {
        "rows": rows,
        "provenance": {
            "peer_repository": PEER_URL,
            "peer_commit_requested": PEER_COMMIT,
            "peer_commit": _peer_commit(peer_dir),
            "peer_dir": str(peer_dir),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "torchvision_import": tv_note,
            "numpy": numpy.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "logs": str(workdir),
        },
    }


# --- our side (the project's interpreter, with jax) -------------------------------------

def ours(rounds: int, batches: int | None) -> dict:
    import equinox as eqx
    import jax

    import dtp_eqx

    data = dtp_eqx.load_mnist()
    x, y = jax.numpy.asarray(data.x_train), jax.numpy.asarray(data.y_train)
    if batches is not None:
        x, y = x[:batches * 100], y[:batches * 100]
    rows = {}
    for label, (method, schedule) in OURS.items():
        print(f"  ours {label} ...", end=" ", flush=True)
        extra = {} if schedule is None else {"schedule": schedule}
        config = dtp_eqx.paper_config("mnist-deep", method, **extra)
        model = dtp_eqx.paper_network("mnist-deep", key=jax.random.key(0))
        opt_state = dtp_eqx.init_opt_state(model, config)
        phases = config.phases(1)
        seconds = []
        for epoch in range(1 + rounds):  # epoch 0 compiles: the warm-up
            start = time.perf_counter()
            for i, phase in enumerate(phases):
                key = jax.random.fold_in(jax.random.key(1), 10 * epoch + i)
                model, opt_state, _ = dtp_eqx.train_epoch(
                    model, opt_state, x, y, key=key, config=config, phase=phase)
            jax.block_until_ready(eqx.filter((model, opt_state), eqx.is_array))
            seconds.append(time.perf_counter() - start)
        used = (x.shape[0] // config.batch_size) * config.batch_size
        rows[label] = {**_summary(seconds[1:], used), "warmup_seconds": seconds[0],
                       "batch_size": config.batch_size, "dtype": "float32",
                       "phases_per_epoch": list(phases), "optimizer": config.optimizer}
        print(f"{rows[label]['examples_per_second']:.0f} examples/s", flush=True)
    return rows


# --- the report -------------------------------------------------------------------------

def ratios(our_rows: dict, their_rows: dict) -> list[dict]:
    out = []
    for label, kind in RATIOS.items():
        for name, theirs in their_rows.items():
            if name.startswith(kind + "/"):
                out.append({"ours": label, "theirs": name,
                            "ours_over_theirs": our_rows[label]["examples_per_second"]
                            / theirs["examples_per_second"]})
    return out


def markdown(result: dict) -> str:
    p, s = result["provenance"], result["settings"]
    lines = [
        "# dtp_eqx beside the Meulemans et al. PyTorch DTP code",
        "",
        f"Training examples per second, median of {s['rounds']} epoch(s) after a warm-up "
        f"epoch; 784-240x7-10 tanh network, MNIST"
        + (f", **capped at {s['batches']} batches per epoch (a smoke test, not a "
           "measurement)**" if s["batches"] else "")
        + f". Made by `benchmarks/peers/run.py` on {p['date']}.",
        "",
        "| code | what | batch | dtype | examples/s | s/epoch |",
        "|---|---|---:|---|---:|---:|",
    ]
    for label, r in result["ours"].items():
        lines.append(f"| dtp_eqx | {label} | {r['batch_size']} | {r['dtype']} | "
                     f"{r['examples_per_second']:.0f} | {r['median_seconds']:.3f} |")
    for name, r in result["theirs"].items():
        lines.append(f"| Meulemans et al. | {name} | {r['batch_size']} | {r['dtype']} | "
                     f"{r['examples_per_second']:.0f} | {r['median_seconds']:.3f} |")
    lines += ["", "Ratios ours / theirs (examples per second; above 1: dtp_eqx is faster):",
              "", "| ours | theirs | ratio |", "|---|---|---:|"]
    for r in result["ratios"]:
        lines.append(f"| {r['ours']} | {r['theirs']} | {r['ours_over_theirs']:.2f} |")
    lines += [
        "",
        "Ours: `dtp_eqx.paper_config(\"mnist-deep\", ...)` settings, compiled `train_epoch` "
        "(a `lax.scan` over minibatches), float32, batch 100. Theirs: their `main.run()` "
        "with `final_configs.mnist_DTP` / `final_configs.mnist_BP` (network changed to 7 x "
        "240, CPU, no pruning of runs), their DTP being their parallel (per-batch) training; "
        "`as-run` = their DataLoader over torchvision's MNIST (offline stand-in), "
        "`preloaded` = the same normalised images as tensors in memory; float64 is their "
        "published `double_precision`.",
        "",
        f"- machine: {p['machine']}, {p['cpu_model']}, {p['cpu_count']} CPUs "
        f"({p['cpus_usable']} usable by this run); load average "
        f"{p['load_average_start']} at the start, {p['load_average_end']} at the end",
        f"- dtp_eqx commit {p['commit']}; jax {p['jax']}, equinox {p['equinox']}, "
        f"python {p['python']}",
        f"- peer {p['peer']['peer_repository']} commit {p['peer']['peer_commit']} "
        f"(requested {p['peer']['peer_commit_requested']}); torch {p['peer']['torch']} "
        f"(intra-op threads: {p['peer']['torch_threads']}), torchvision {p['peer']['torchvision']}, "
        f"python {p['peer']['python']}",
        f"- wall time {result['wall_seconds']:.0f} s",
        "",
    ]
    return "\n".join(lines)


def _skip(message: str) -> int:
    print(f"peer benchmark skipped: {message}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed epochs per measurement after the warm-up (default 3)")
    parser.add_argument("--batches", type=int, default=None,
                        help="cap every epoch at this many minibatches (a smoke test)")
    parser.add_argument("--peer-dir", default=os.environ.get("PEER_DIR", DEFAULT_PEER_DIR),
                        help=f"the peer checkout (PEER_DIR; default {DEFAULT_PEER_DIR})")
    parser.add_argument("--peer-python",
                        default=os.environ.get("PEER_PYTHON", str(DEFAULT_PEER_PYTHON)),
                        help="a Python with torch for the peer (PEER_PYTHON; default "
                             "benchmarks/peers/.venv/bin/python)")
    parser.add_argument("--peer-precision", choices=("both", "float64", "float32"),
                        default="both",
                        help="their precision: float64 (their published setting), "
                             "float32, or both (default)")
    parser.add_argument("--peer-batch-size", type=int, default=None,
                        help="their batch size (default: their config's, 128)")
    parser.add_argument("--peer-threads", type=int, default=None,
                        help="torch's intra-op threads (default: torch's own, one per "
                             "core); 1 on a machine busy with other work, see README.md")
    parser.add_argument("--data-dir", default=None,
                        help="folder with mnist.npz (default DTP_EQX_DATA)")
    parser.add_argument("--out", default=None,
                        help="results file (default benchmarks/results/peer-benchmark.json; "
                             "benchmarks/peers/smoke/peer-benchmark.json with --batches)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # the peer's side, in the peer's Python: spec file -> result file
        spec = json.loads(Path(args.worker).read_text())
        result = peer_worker(spec)
        Path(spec["result"]).write_text(json.dumps(result))
        return 0

    if args.rounds < 1:
        parser.error(f"--rounds must be positive, got {args.rounds}")
    if args.peer_threads is not None and args.peer_threads < 1:
        parser.error(f"--peer-threads must be positive, got {args.peer_threads}")
    if args.batches is not None and args.batches < 1:
        parser.error(f"--batches must be positive, got {args.batches}")
    peer_dir = Path(args.peer_dir)
    if not ((peer_dir / "main.py").is_file() and (peer_dir / "lib" / "train.py").is_file()):
        return _skip(f"no peer checkout at {peer_dir} (run benchmarks/peers/setup.sh, "
                     "or give --peer-dir)")
    probe = subprocess.run([args.peer_python, "-c", "import torch"], capture_output=True)  \
        if Path(args.peer_python).exists() else None
    if probe is None or probe.returncode != 0:
        return _skip(f"no torch in {args.peer_python} (run benchmarks/peers/setup.sh, or "
                     "give --peer-python)")
    try:
        import jax

        import dtp_eqx  # noqa: F401
        from dtp_eqx._provenance import provenance, write_json
    except ImportError as error:
        return _skip(f"run it with the project's Python (dtp_eqx and jax): {error}")

    start = time.perf_counter()
    load_start = os.getloadavg()
    mnist = _mnist_file(args.data_dir)
    os.environ.setdefault("DTP_EQX_DATA", str(mnist.parent))
    print(f"peer benchmark: {args.rounds} timed epoch(s) after a warm-up"
          + (f", {args.batches} batches per epoch (smoke test)" if args.batches else ""),
          flush=True)
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {load_start[0]:.1f} on {os.cpu_count()} CPUs: the machine "
              "is busy, so these times are not representative (torch with several threads "
              "slows down most; see README.md)", flush=True)
    our_rows = ours(args.rounds, args.batches)

    precisions = ["float64", "float32"] if args.peer_precision == "both" else [args.peer_precision]
    with tempfile.TemporaryDirectory(prefix="peer-spec-") as tmp:
        spec = {"peer_dir": str(peer_dir), "mnist": str(mnist), "rounds": args.rounds,
                "batches": args.batches, "precisions": precisions,
                "peer_batch_size": args.peer_batch_size, "peer_threads": args.peer_threads,
                "result": str(Path(tmp) / "result.json")}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        subprocess.run([args.peer_python, str(Path(__file__).resolve()),
                        "--worker", str(Path(tmp) / "spec.json")], check=True,
                       env={**os.environ, "PYTHONNOUSERSITE": "1"})
        peer = json.loads(Path(spec["result"]).read_text())

    result = {
        "smoke_test": args.batches is not None,
        "settings": {"rounds": args.rounds, "batches": args.batches,
                     "statistic": "median of the timed epochs",
                     "peer_precisions": precisions,
                     "peer_batch_size": args.peer_batch_size or "their config's",
                     "peer_threads": args.peer_threads or "torch's default",
                     "data": f"MNIST, {mnist}",
                     "peer_evaluation": "their per-epoch evaluation runs on one test "
                                        "(and one validation) batch, outside the timing",
                     "ours_examples_per_epoch": "50,000 (dtp_eqx.load_mnist's train split)",
                     "theirs_examples_per_epoch": "55,000 (their random_split of the "
                                                  "60,000 official training images)"},
        "ours": our_rows,
        "theirs": peer["rows"],
        "ratios": ratios(our_rows, peer["rows"]),
        "wall_seconds": time.perf_counter() - start,
        "provenance": {**provenance(), "machine": platform.machine(),
                       "cpu_model": _cpu_model(), "jax_backend": jax.default_backend(),
                       "cpus_usable": len(os.sched_getaffinity(0))
                       if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                       "load_average_start": [round(v, 2) for v in load_start],
                       "load_average_end": [round(v, 2) for v in os.getloadavg()],
                       "date_local": datetime.datetime.now().astimezone().isoformat(
                           timespec="seconds"),
                       "peer": peer["provenance"]},
    }
    default = (HERE / "smoke" if args.batches else ROOT / "benchmarks" / "results")
    out = Path(args.out) if args.out else default / "peer-benchmark.json"
    write_json(out, result)
    out.with_suffix(".md").write_text(markdown(result))
    print("\nours / theirs (examples per second):")
    for r in result["ratios"]:
        print(f"  {r['ours']:<20} / {r['theirs']:<24} {r['ours_over_theirs']:6.2f}")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
