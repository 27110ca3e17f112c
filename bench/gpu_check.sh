#!/usr/bin/env bash
# harp's GPU check: one command, one table, a few minutes on one GPU.
#
#   bench/gpu_check.sh              # on a GPU machine, from a fresh clone (sets up .venv with a CUDA torch if missing)
#   bench/gpu_check.sh --dry-run    # print the steps, run nothing
#   bench/gpu_check.sh --cpu        # the same steps at tiny sizes on the CPU (a smoke test of this script)
#
# Rows: TimeSformer-base 8x224 bf16 training (clips/s, MFU, data-wait fraction, peak memory:
# bench/train_trial.py), SDPA vs transformers' eager attention (forward+backward clips/s:
# bench/attention.py), and a 2-trial sweep on the GPU (harp sweep; with 2+ GPUs one of the trials
# is a 2-worker TorchTrainer trial). Every step's JSON and log lands in $HARP_GPU_CHECK_OUT
# (default: a temp folder, printed); the table is printed last. Without nvidia-smi it runs --cpu.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --cpu) MODE=cpu ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $arg (use --dry-run, --cpu)" >&2; exit 2 ;;
  esac
done
if [ "$MODE" = gpu ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check.sh: no nvidia-smi on this machine: running the CPU smoke version (--cpu)" >&2
  MODE=cpu
fi
GPUS=0
[ "$MODE" = gpu ] && GPUS=$(nvidia-smi --list-gpus | wc -l)

OUT=${HARP_GPU_CHECK_OUT:-$(mktemp -d -t harp-gpu-check-XXXXXX)}
mkdir -p "$OUT"
PY=.venv/bin/python
HARP=.venv/bin/harp

run() {  # run (or, with --dry-run, print) one step; its output goes to $OUT/<name>.log
  local name=$1 limit=$2; shift 2
  echo "[gpu_check] $name: $*" >&2
  [ "$DRY" = 1 ] && return 0
  if ! timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "[gpu_check] $name FAILED (log: $OUT/$name.log):" >&2
    tail -20 "$OUT/$name.log" >&2
    return 1
  fi
}

# 1. the environment: scripts/bootstrap.sh installs a CUDA torch when nvidia-smi exists
if [ ! -x "$PY" ]; then
  run bootstrap 1200 scripts/bootstrap.sh || exit 1
fi
if [ "$DRY" = 0 ] && [ "$MODE" = gpu ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: .venv's torch ($("$PY" -c 'import torch; print(torch.__version__)')) does not see a GPU;" \
       "reinstall it as a CUDA build: HARP_TORCH_REINSTALL=1 scripts/bootstrap.sh" >&2
  exit 2
fi

if [ "$MODE" = gpu ]; then
  TRAIN_ARGS=(--family timesformer --size base --frame-size 224 --batch-size 16 --epochs 2 --precision bf16 --loader-workers 8)
  ATTN_ARGS=(--size base --device cuda --dtype bf16 --batch 8 --turns 3 --iters 5)
  SWEEP_SIZE=(model.size=base model.frame_size=224 data.synth.min_size=224 data.synth.max_size=224 train.batch_size=8)
else
  TRAIN_ARGS=(--family timesformer --size tiny --frame-size 32 --batch-size 4 --epochs 1 --precision fp32 --loader-workers 0
              --classes 2 --clips-per-class 4)
  ATTN_ARGS=(--size tiny --device cpu --dtype fp32 --batch 2 --turns 2 --iters 2)
  SWEEP_SIZE=(model.size=tiny train.batch_size=4)
fi

start=$(date +%s)
status=0
run train 900 "$PY" bench/train_trial.py "${TRAIN_ARGS[@]}" --data-root "$OUT/synthetic" --json "$OUT/train.json" || status=1
run attention 600 "$PY" bench/attention.py "${ATTN_ARGS[@]}" --json "$OUT/attention.json" || status=1

# 3. a 2-trial sweep on the GPU (a 2-worker TorchTrainer trial when there are 2 GPUs)
WORKERS='[1]'; LRS='[0.0001, 0.001]'; GPT=0
[ "$MODE" = gpu ] && GPT=1
if [ "$GPUS" -ge 2 ]; then WORKERS='[1, 2]'; LRS='[0.0003]'; GPT=2; fi
cat >"$OUT/space.yaml" <<EOF
description: gpu_check's tiny sweep (2 trials; a 2-worker trial when 2 GPUs exist)
config:
  model.family: timesformer
  train.epochs: 1
  train.max_steps_per_epoch: 4
  data.synth.num_classes: 2
  data.synth.clips_per_class: 6
  wandb.mode: disabled
sweep:
  searcher: grid
  scheduler: none
  max_concurrent_trials: 1
  gpus_per_trial: $GPT
  max_failures: 0
params:
  train.num_workers: {type: grid, values: $WORKERS}
  optim.lr: {type: grid, values: $LRS}
EOF
sweep_start=$(date +%s)
run sweep 900 "$HARP" sweep --space "$OUT/space.yaml" --no-export --quiet "${SWEEP_SIZE[@]}" \
  "data.root=$OUT/sweep-data" "sweep.output_dir=$OUT/sweeps" sweep.name=gpu-check || status=1
sweep_s=$(( $(date +%s) - sweep_start ))
[ "$DRY" = 1 ] && { echo "[gpu_check] dry run: nothing was run; results would be in $OUT" >&2; exit 0; }

"$PY" - "$OUT" "$MODE" "$GPUS" "$sweep_s" "$(( $(date +%s) - start ))" <<'EOF'
import json, sys
from pathlib import Path

out, mode, gpus, sweep_s, total_s = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}
train, attention = load("train"), load("attention")
trials = sorted((out / "sweeps" / "gpu-check" / "tune").glob("harp_trial_*/result.json"))
done = sum(1 for t in trials if t.read_text().strip())
fmt = lambda v, f="{:.3g}": "-" if v is None or v != v else f.format(v)  # noqa: E731
med = lambda xs: sorted(xs)[len(xs) // 2] if xs else None  # noqa: E731
rates = attention.get("rates") or {}
rows = [
    ("device", train.get("device", "-")),
    (f"TimeSformer-{train.get('size', '?')} {train.get('frames', '?')}x{train.get('frame_size', '?')} {train.get('precision', '?')} training clips/s",
     fmt(train.get("clips_per_s"))),
    ("MFU (training FLOPs / peak bf16)", fmt(train.get("mfu"), "{:.1%}")),
    ("data-wait fraction", fmt(train.get("data_wait_frac"), "{:.1%}")),
    ("peak GPU memory (GiB)", fmt(train.get("peak_gpu_mem_gib"), "{:.1f}")),
    ("attention fwd+bwd clips/s: HF eager", fmt(med(rates.get("eager")))),
    ("attention fwd+bwd clips/s: SDPA (harp default)", fmt(med(rates.get("sdpa")))),
    ("SDPA / eager", fmt(attention.get("ratio"), "{:.2f}x")),
    ("max |logits SDPA - eager|", fmt(attention.get("max_logit_diff"), "{:.1e}")),
    (f"2-trial sweep ({'with a 2-worker trial, ' if gpus >= 2 else ''}{gpus} GPU{'s' if gpus != 1 else ''})",
     f"{done} trials finished in {sweep_s} s"),
    ("whole check (s)", str(total_s)),
]
print(f"\nharp GPU check ({mode}); logs and JSON in {out}\n")
print("| measurement | value |")
print("|---|---:|")
for name, value in rows:
    print(f"| {name} | {value} |")
EOF
exit $status
