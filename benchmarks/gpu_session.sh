#!/bin/bash
# One short session on a lent GPU (issue 52 item 4; issue 48's timings): the device tool runs it in a copy of the repo.
#   here:   bash benchmarks/gpu_prepare.sh
#   device: run(command="bash benchmarks/gpu_session.sh", carry=["build/gpu"], timeout_s=590)
# It installs what the image lacks, runs the unit tests, then notebooks 01-04 of `full` and, while time is left, of
# `paper` from random init at the full window (labelled random init; one epoch, 100 warm-start steps), and leaves in
# $OUT a summary and one archive (each step's log, the result files and stamps, GPU memory sampled every 0.5 s): the
# tool brings back at most 8 files. The checked nbval copies hold CPU outputs, so nbval is not run here.
set -u
OUT=${OUT:-/tmp/gpu-out}
WORK=/tmp/gpu-session
BUDGET=${BUDGET:-560}   # seconds this script may use; a step starts only with its estimate left
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/summary.txt") 2>&1
started=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - started))); }
step() {  # step NAME ESTIMATE_S COMMAND...: run COMMAND if ESTIMATE_S seconds are left; its log and wall time to $OUT
  local name=$1 estimate=$2; shift 2
  if [ "$(left)" -lt "$estimate" ]; then echo "$name: skipped, $(left) s left, needs about $estimate"; return; fi
  local t0=$(date +%s)
  timeout "$(left)" "$@" > "$WORK/$name.log" 2>&1
  echo "$name: rc $? in $(( $(date +%s) - t0 )) s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 > "$WORK/gpu_memory.csv" &
PY=python3
step install 30 $PY -m pip install --no-index --find-links build/gpu/wheels papermill jupytext nbval ipykernel logomaker captum
step kn_utils 20 $PY -m pip install --no-deps --no-build-isolation -e .
$PY -m ipykernel install --user --name python3 > /dev/null 2>&1
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
export KN_MIRROR=$PWD/build/gpu/mirror KN_RUNS_DIR=$WORK/runs
step tests 120 $PY -m pytest -q -x -p no:cacheprovider tests --ignore=tests/nbval --ignore=tests/test_notebooks.py \
    --ignore=tests/test_control_run.py --ignore=tests/test_book.py --durations=10
step full 330 $PY -m kn_utils run --profile full --to 04
step paper 150 $PY -m kn_utils run --profile paper --to 04 -p init random -p epochs 1 -p mlm_steps 100
kill %1 2>/dev/null
$PY - "$WORK" <<'PY'
import glob, json, sys
work = sys.argv[1]
for stamp in sorted(glob.glob(f"{work}/runs/*/stages/*.json")):
    found = json.load(open(stamp))
    print(stamp.split("/")[-3], found["notebook"], f"{found['seconds']:.0f} s")
for result in sorted(glob.glob(f"{work}/runs/*/finetune.json")):
    found = json.load(open(result))
    print(result.split("/")[-2], "train tokens/s", round(found.get("train_tokens_per_s", 0)), "accuracy", found.get("accuracy"))
for result in sorted(glob.glob(f"{work}/runs/*/integrated_gradients.json")):
    found = json.load(open(result))
    print(result.split("/")[-2], "IG", found.get("n_examples"), "examples in", round(found.get("ig_seconds", 0)), "s; within bound:",
          found.get("within_bound"), "median error", found.get("completeness_error_median"))
used = [int(line.split(",")[1].split()[0]) for line in open(f"{work}/gpu_memory.csv") if "MiB" in line]
print(f"peak GPU memory sampled: {max(used, default=0)} MiB over {len(used)} samples")
PY
tar czf "$OUT/gpu_session.tgz" -C "$WORK" --exclude='runs/*/model' --exclude='runs/*/checkpoints' --exclude='*.npz' \
    --exclude='*.parquet' .
