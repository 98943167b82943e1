#!/usr/bin/env bash
# Set up the peer benchmark (benchmarks/peers/run.py): a virtual environment of its own
# with CPU-only PyTorch and what the Meulemans et al. code imports, and a checkout of
# that code outside this repository. Nothing here touches dtp_eqx's own dependencies.
#
#   bash benchmarks/peers/setup.sh              # venv in benchmarks/peers/.venv
#   PEER_VENV=/some/where bash benchmarks/peers/setup.sh
#
# Environment:
#   PYTHON       interpreter for the venv (default python3; torch needs 3.10-3.13)
#   PEER_VENV    where the venv goes (default benchmarks/peers/.venv)
#   PEER_DIR     where the peer code is checked out (default /work/peers/meulemans)
#   PEER_GIT     a git directory (bare or not) holding the peer repository; when given
#                and PEER_DIR is missing, commit PEER_COMMIT is exported into PEER_DIR.
#                Without it, PEER_DIR must already hold the code (or is cloned from
#                GitHub when PEER_CLONE=1).
#   PEER_COMMIT  the peer commit (default b6ee350)
#   TORCH_SPEC   what to pip-install for torch, overriding the search below
#
# Torch: the CPU wheel index (download.pytorch.org/whl/cpu) when it answers; else a local
# "+cpu" wheel in one of pip's find-links folders; else plain PyPI (whose Linux wheel is
# the CUDA build: large, but it runs on CPU).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
PEER_VENV="${PEER_VENV:-$HERE/.venv}"
PEER_DIR="${PEER_DIR:-/work/peers/meulemans}"
PEER_COMMIT="${PEER_COMMIT:-b6ee350}"
PEER_URL="https://github.com/meulemansalex/theoretical_framework_for_target_propagation"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

# --- the peer code ---------------------------------------------------------------------
if [ -f "$PEER_DIR/main.py" ] && [ -d "$PEER_DIR/lib" ]; then
    echo "peer code: $PEER_DIR (already there)"
elif [ -n "${PEER_GIT:-}" ]; then
    mkdir -p "$PEER_DIR"
    git --git-dir="$PEER_GIT" archive "$PEER_COMMIT" | tar -x -C "$PEER_DIR"
    git --git-dir="$PEER_GIT" rev-parse "$PEER_COMMIT^{commit}" > "$PEER_DIR/.peer-commit"
    echo "peer code: $PEER_DIR (commit $(cat "$PEER_DIR/.peer-commit") from $PEER_GIT)"
elif [ "${PEER_CLONE:-0}" = 1 ]; then
    git clone --quiet "$PEER_URL" "$PEER_DIR"
    git -C "$PEER_DIR" checkout --quiet "$PEER_COMMIT"
    git -C "$PEER_DIR" rev-parse HEAD > "$PEER_DIR/.peer-commit"
    echo "peer code: $PEER_DIR (cloned, commit $(cat "$PEER_DIR/.peer-commit"))"
else
    echo "peer code: not found at $PEER_DIR; set PEER_GIT=<git dir> or PEER_CLONE=1" \
         "to get commit $PEER_COMMIT of $PEER_URL (continuing with the venv)"
fi

# --- the venv --------------------------------------------------------------------------
if [ ! -x "$PEER_VENV/bin/python" ]; then
    "$PYTHON" -m venv "$PEER_VENV"
fi
PY="$PEER_VENV/bin/python"
PIP=("$PY" -m pip install --quiet)
# what the peer code imports besides torch (pandas, matplotlib and tensorboardX at module
# level, though the benchmark uses none of them), and Pillow for torchvision's MNIST
"${PIP[@]}" numpy pillow pandas matplotlib tensorboardX

if [ -z "${TORCH_SPEC:-}" ]; then
    if curl -fsS --max-time 15 -o /dev/null "$CPU_INDEX/torch/" 2>/dev/null; then
        echo "torch: from $CPU_INDEX"
        "${PIP[@]}" --index-url "$CPU_INDEX" torch torchvision
        TORCH_DONE=1
    else
        # a local CPU wheel for this interpreter in pip's find-links, if any
        tag="cp$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
        links="${PIP_FIND_LINKS:-} $("$PY" -m pip config get global.find-links 2>/dev/null || true)"
        for d in $links; do
            d="${d#file://}"
            for w in "$d"/torch-*+cpu-"$tag"-*.whl; do
                [ -f "$w" ] && TORCH_SPEC="$w"
            done
        done
        if [ -n "${TORCH_SPEC:-}" ]; then
            echo "torch: $CPU_INDEX unreachable; local CPU wheel $TORCH_SPEC"
        else
            echo "torch: $CPU_INDEX unreachable and no local CPU wheel; plain PyPI"
            TORCH_SPEC=torch
        fi
    fi
fi
if [ -z "${TORCH_DONE:-}" ]; then
    "${PIP[@]}" "$TORCH_SPEC"
    # torchvision of the installed torch's release (PyPI's pins torch==X.Y.Z exactly).
    # Only its datasets and transforms are used, which are pure Python, so --no-deps: it
    # must not replace the CPU torch with PyPI's CUDA build. PyPI's Linux torchvision is
    # a CUDA build whose C extension cannot load with a CPU torch; run.py handles that.
    tv=$("$PY" - <<'EOF'
import torch
major, minor = (int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
# torchvision 0.(minor+15) goes with torch 2.minor (2.0 -> 0.15, ..., 2.13 -> 0.28)
print(f"torchvision==0.{minor + 15}.*" if major == 2 else "torchvision")
EOF
)
    "${PIP[@]}" --no-deps "$tv"
fi

# torchvision is imported by run.py only (which works around a torchvision whose C
# extension was built for another torch: see README.md), so only its version is shown
"$PY" - <<'EOF'
from importlib.metadata import version
import torch
print("installed: torch", torch.__version__, "| torchvision", version("torchvision"),
      "| torch threads", torch.get_num_threads())
EOF
echo "venv: $PEER_VENV"
