#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, install what is needed, run the benchmark
# and the mnist-deep DTP reproduction, and write results. Under 8 minutes on one H100.
#
#   bash benchmarks/gpu_check.sh                 # results under benchmarks/results/gpu
#   OUT=/some/dir DTP_EQX_DATA=/path/to/data bash benchmarks/gpu_check.sh
#
# Settings (environment variables):
#   OUT           where results go (default benchmarks/results/gpu)
#   DTP_EQX_DATA  folder with mnist.npz (needed where the machine cannot download)
#   EPOCHS        epochs of the mnist-deep DTP reproduction (default 100, the paper's)
#   SEEDS         seeds trained together in one program (default 3)
#   WHEELS        a folder of wheels to install from, for machines without internet
#   ALLOW_CPU=1   run even without a GPU (to test this script; timings are then CPU's)
#   PY            a Python that already has dtp_eqx and a GPU jax (default python3)
#   BENCH_ARGS, REPRODUCE_ARGS  extra flags, e.g. --quick for a smoke test
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
EPOCHS=${EPOCHS:-100}
SEEDS=${SEEDS:-3}
mkdir -p "$OUT"
start=$(date +%s)

# 1. Python environment: reuse $PY (default python3) when its jax sees a GPU (or
#    ALLOW_CPU=1), else make .venv-gpu with dtp_eqx and jax[cuda12].
PY=${PY:-python3}
if ! $PY -c 'import jax, dtp_eqx, os; assert jax.default_backend() == "gpu" or os.environ.get("ALLOW_CPU") == "1"' 2>/dev/null; then
  if [ ! -x .venv-gpu/bin/python ]; then
    python3 -m venv .venv-gpu
  fi
  PY=.venv-gpu/bin/python
  pip_args=(--quiet)
  if [ -n "${WHEELS:-}" ]; then pip_args+=(--no-index --find-links "$WHEELS"); fi
  if [ "${ALLOW_CPU:-0}" = 1 ]; then
    $PY -m pip install "${pip_args[@]}" -e .
  else
    $PY -m pip install "${pip_args[@]}" -e . "jax[cuda12]"
  fi
fi
backend=$($PY -c 'import jax; print(jax.default_backend())')
echo "backend: $backend"
$PY -c 'import jax; print(jax.devices())'
if [ "$backend" != gpu ] && [ "${ALLOW_CPU:-0}" != 1 ]; then
  echo "no GPU visible to jax (backend: $backend); set ALLOW_CPU=1 to run anyway" >&2
  exit 1
fi
if [ "$backend" = gpu ]; then unset JAX_PLATFORMS; nvidia-smi --query-gpu=name,memory.total --format=csv || true; fi

# 2. The benchmark (about 2 minutes on a GPU).
timeout 300 $PY benchmarks/bench.py ${BENCH_ARGS:-} --out "$OUT/bench-$backend.json" \
  | tee "$OUT/bench-$backend.txt"

# 3. The mnist-deep DTP reproduction, several seeds in one program.
timeout 330 $PY -m dtp_eqx reproduce mnist-deep --method dtp --seeds "$SEEDS" \
  --epochs "$EPOCHS" --eval-every 10 --checkpoint-every 1000 --no-progress \
  --out "$OUT/mnist-deep-dtp-$backend.json" ${REPRODUCE_ARGS:-} | tee "$OUT/mnist-deep-dtp-$backend.txt"
rm -f "$OUT/mnist-deep-dtp-$backend.ckpt"
echo "gpu_check finished in $(( $(date +%s) - start )) s; results in $OUT"
