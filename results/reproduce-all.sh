#!/usr/bin/env bash
# Every search and full-length run behind results/, one after another, at low priority.
# Each run checkpoints beside its results file (under RUNS, outside git) and resumes there;
# a finished run is skipped; its results file is copied into results/. Hours on 2 CPU cores.
#   RUNS=/path/to/scratch bash results/reproduce-all.sh [GROUP...]
# GROUPs (default: all, in this order): discrete stochastic autoencoder cifar10 relu tp.
# Two queues on different groups can share RUNS, e.g. `... cifar10` beside `... relu tp`.
set -u
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
PY=${PY:-python}
mkdir -p "$RUNS/search" results/search
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$RUNS/reproduce-all.log"; }

search() {  # experiment method [flags]: results/search/EXPERIMENT-METHOD[-TAG].json
  local exp=$1 method=$2 tag=$3; shift 3
  local out=results/search/$exp-$method$tag.json
  [ -f "$out" ] && return 0
  log "search $exp $method$tag $*"
  nice -n 19 $PY -m dtp_eqx search "$exp" --method "$method" --out "$out" --no-progress "$@" \
    >> "$RUNS/search/$exp-$method$tag.log" 2>&1 || log "FAILED search $exp $method$tag"
}

run() {  # experiment method [flags]: results/EXPERIMENT-METHOD.json
  local exp=$1 method=$2; shift 2
  local out=$RUNS/$exp-$method.json
  [ -f "$out.done" ] && return 0
  log "run $exp $method $*"
  if nice -n 19 $PY -m dtp_eqx reproduce "$exp" --method "$method" --out "$out" --resume \
      --no-progress "$@" >> "$RUNS/$exp-$method.log" 2>&1; then
    cp "$out" results/ && touch "$out.done" && log "done $exp $method"
  else
    log "FAILED run $exp $method (see $RUNS/$exp-$method.log)"
  fi
}

ALL=(discrete stochastic autoencoder cifar10 relu tp)
GROUPS_ASKED=("${@:-${ALL[@]}}")
for g in "${GROUPS_ASKED[@]}"; do
  case " ${ALL[*]} " in *" $g "*) ;; *) echo "unknown group '$g'; expected one of: ${ALL[*]}" >&2; exit 2;; esac
done
wanted() { case " ${GROUPS_ASKED[*]} " in *" $1 "*) return 0;; esac; return 1; }

# The original code's settings
if wanted discrete; then
  for m in dtp bp-continuous bp ste; do
    run discrete $m --seeds 3 --eval-every 25 --checkpoint-every 10
  done
fi
wanted stochastic && run stochastic ste --seeds 3 --eval-every 25 --checkpoint-every 10
# The auto-encoder searches its own settings
wanted autoencoder && run autoencoder dtp --seeds 3 --checkpoint-every 5
# Settings searched on a validation split (the paper's CIFAR-10 used 1,000 images)
if wanted cifar10; then
  search cifar10 dtp "" --trials 16 --epochs 3 --n-train 10000 --n-valid 1000
  search cifar10 bp "" --trials 8 --epochs 3 --n-train 10000 --n-valid 1000
  run cifar10 dtp --seeds 3 --eval-every 5 --settings results/search/cifar10-dtp.json
  run cifar10 bp --seeds 3 --eval-every 5 --settings results/search/cifar10-bp.json
fi
if wanted relu; then
for fb in tanh relu identity; do
  search mnist-deep-relu dtp "-$fb" --trials 16 --epochs 5 --n-valid 10000 --feedback-activation $fb
done
search mnist-deep-relu bp "" --trials 8 --epochs 5 --n-valid 10000
best_relu=$($PY - <<'PY'
import json, pathlib
files = sorted(pathlib.Path("results/search").glob("mnist-deep-relu-dtp-*.json"))
print(min(files, key=lambda p: json.loads(p.read_text())["best_valid_error"]))
PY
)
run mnist-deep-relu dtp --seeds 3 --settings "$best_relu"
run mnist-deep-relu bp --seeds 3 --settings results/search/mnist-deep-relu-bp.json
fi
if wanted tp; then
  search mnist-deep tp "" --trials 16 --epochs 5 --n-valid 10000
  run mnist-deep tp --seeds 3 --settings results/search/mnist-deep-tp.json
fi
$PY -m dtp_eqx report
