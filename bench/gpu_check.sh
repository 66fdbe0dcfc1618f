#!/usr/bin/env bash
# The GPU checks of issues 14 and 13 in one run of at most DEADLINE seconds (default 540)
# on one GPU: the CUDA tests (graph = eager, recapture, no host sync, precision modes),
# the speed table of bench/gpu.py, the GPU recipe (75 s of training, test2016 with beam
# 5), the CUDA path of torchrun training (bench/ddp_cuda.py) and torch.compile'd cells.
# Everything it writes goes to $OUT as it comes (7 files: check.log, tests.log, gpu.json,
# train.log, train_log.csv, eval.json, gpu_fuse.json); each part's exit status is logged
# (124: its timeout), and a part is cut to the time left before the deadline.
#
# From a session with a device machine (see /work/.library/device/README.md), once:
#   echo /.gpu_data/ >> .git/info/exclude
#   mkdir -p .gpu_data && cp -r ../shared/data/multi30k .gpu_data/
# then dry-run it here (CPU: the CUDA tests skip, QUICK=1 runs bench/gpu.py's smoke size):
#   OUT=/tmp/gpu_out PYTHON=.venv/bin/python QUICK=1 STEPS="tests bench" bash bench/gpu_check.sh
# and run it there as one command, carrying the data:
#   run(command="bash bench/gpu_check.sh", carry=[".gpu_data"], timeout_s=590)
# (parts in order of importance, each under its own timeout: a part that hangs costs
# only its own share)
# STEPS chooses the parts (default: tests bench recipe ddp fuse), e.g. to rerun one;
# RECIPE_SET="key=value ..." adds --set overrides to the recipe's training.
set -u -o pipefail
OUT=${OUT:-gpu_out}
PY=${PYTHON:-python3}
DATA=${RNNKIT_DATA:-.gpu_data}
STEPS=${STEPS:-tests bench recipe ddp fuse}
END=$(( $(date +%s) + ${DEADLINE:-540} ))
QUICKFLAG=$([ -n "${QUICK:-}" ] && echo --quick || true)
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
LOG="$OUT/check.log"
say() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
has() { [[ " $STEPS " == *" $1 "* ]]; }
# the seconds a part may take: its own limit, or what is left before the deadline
budget() { local left=$(( END - $(date +%s) - 5 )); echo $(( left < 1 ? 1 : (left < $1 ? left : $1) )); }
ended() { say "$1: exit $2$([ "$2" = 124 ] && echo ' (timed out)')"; }

say "environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
} 2>&1 | tee -a "$LOG"

if has tests; then
  say "CUDA tests (graph = eager, recapture, no sync, precision): all output in tests.log"
  timeout "$(budget 120)" $PY -m pytest -q -rs -p no:cacheprovider tests/test_graphs.py \
    tests/test_graphs_seq2seq.py tests/test_precision.py tests/test_ensemble.py -k cuda \
    2>&1 | tee "$OUT/tests.log" | tail -40 >> "$LOG"
  ended tests "${PIPESTATUS[0]}"
  tail -40 "$OUT/tests.log"
  say "autocast: what torch.nn.LSTM returns under each autocast dtype"
  $PY - <<'PYEOF' 2>&1 | tee -a "$LOG"
import torch
dev = "cuda" if torch.cuda.is_available() else "cpu"
m = torch.nn.LSTM(8, 8).to(dev)
for dt in (torch.bfloat16, torch.float16):
    try:
        with torch.autocast(dev, dtype=dt):
            out, (h, c) = m(torch.randn(5, 3, 8, device=dev))
        print(f"autocast {dt}: nn.LSTM output {out.dtype}, h {h.dtype}, c {c.dtype}")
    except RuntimeError as e:
        print(f"autocast {dt}: nn.LSTM fails: {str(e).splitlines()[0]}")
PYEOF
fi

if has bench; then
  say "speed: bench/gpu.py (rows as they come; gpu.json after the table and at the end)"
  timeout "$(budget 150)" $PY bench/gpu.py --repeats 7 $QUICKFLAG --json "$OUT/gpu.json" 2>&1 | tee -a "$LOG"
  ended bench "${PIPESTATUS[0]}"
fi

if has recipe; then
  if [ -f "$DATA/multi30k/train.de" ]; then
    say "recipe: configs/multi30k_de_en_gpu.yaml (75 s of training): all output in train.log"
    extra=()
    for kv in ${RECIPE_SET:-}; do extra+=(--set "$kv"); done  # e.g. RECIPE_SET="train.lr=0.003"
    timeout "$(budget 150)" $PY -m rnnkit train configs/multi30k_de_en_gpu.yaml --out "$WORK/m30k" \
      --set data.data_dir="$DATA" "${extra[@]}" 2>&1 | tee "$OUT/train.log" | tail -25 | tee -a "$LOG"
    ended recipe "${PIPESTATUS[0]}"
    cp "$WORK/m30k/log.csv" "$OUT/train_log.csv" 2>/dev/null
    if [ -f "$WORK/m30k/best.pt" ]; then
      say "test2016, beam 5 (translate_seconds: the model loaded)"
      timeout "$(budget 60)" $PY -m rnnkit evaluate "$WORK/m30k/best.pt" --beam 5 \
        --src "$DATA/multi30k/test2016.de" --ref "$DATA/multi30k/test2016.en" \
        2>>"$LOG" | tee "$OUT/eval.json" | tee -a "$LOG"
      ended evaluate "${PIPESTATUS[0]}"
    fi
  else
    say "recipe skipped: no $DATA/multi30k (see the header)"
  fi
fi

if has ddp; then
  say "torchrun on CUDA: 2 ranks sharing the GPU (gloo) vs 1 process, TF32 off"
  timeout "$(budget 90)" $PY bench/ddp_cuda.py --backend gloo 2>&1 | tail -5 | tee -a "$LOG"
  ended ddp "${PIPESTATUS[0]}"
  if [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" -ge 2 ]; then
    timeout "$(budget 90)" $PY bench/ddp_cuda.py --backend nccl 2>&1 | tail -5 | tee -a "$LOG"
    ended "ddp nccl" "${PIPESTATUS[0]}"
  else
    say "NCCL: needs 2 GPUs (NCCL refuses two ranks on one GPU); not run"
  fi
fi
if has fuse; then
  say "fusing: LayerNormLSTM at 50,64,512 with torch.compile'd cell steps inside the graphs"
  timeout "$(budget 100)" $PY bench/gpu.py --layers LayerNormLSTM --size 50,64,512 --fuse \
    --no-seq2seq --repeats 5 $QUICKFLAG --json "$OUT/gpu_fuse.json" 2>&1 | tee -a "$LOG"
  ended fuse "${PIPESTATUS[0]}"
fi
say "done"
rm -rf "$WORK"
