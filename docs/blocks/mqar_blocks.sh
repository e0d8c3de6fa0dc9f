#!/usr/bin/env bash
# MQAR with every full block of the catalogue (and the GLA EOS core for reference) at
# (seq_len 64, num_kv 4) and (128, 8), d_model 64, the default budget of configs/mqar.py
# (3000 steps of batch 64, early stop at 0.99), best of lr {3e-3, 1e-2}; the delta-rule blocks
# with GLA and Mamba-2 also at (256, 16) (issue 19).
#
# Two workers (one CPU core each: the model is too small for XLA to use two cores well, so two
# single-core runs finish ~1.4x sooner than one after the other) take cells from one queue, the
# delta-rule comparison first. Every cell trains in docs/blocks/mqar_runs/<cell>; its
# summary.json and metrics.jsonl are committed (checkpoints and TensorBoard files are not), so a
# later checkout skips the finished cells. Resumable: rerun to continue (an interrupted cell
# resumes from its checkpoint when the directory survived). At the end it writes the table
# docs/blocks/mqar.md from the finished cells (docs/blocks/mqar_table.py).
#   WORKERS=1 docs/blocks/mqar_blocks.sh   # one worker, both cores
#   DEADLINE=14:20 docs/blocks/mqar_blocks.sh   # claims no cell after 14:20 (a session's end)
#   docs/blocks/mqar_blocks.sh report      # only the tables, from the cells finished so far
#   ONLY='256:16|mamba2 128:8 1e-2' docs/blocks/mqar_blocks.sh   # only the cells whose
#       "model slice lr" line matches this extended regex
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DIR=${DIR:-docs/blocks/mqar_runs}
WORKERS=${WORKERS:-2}
LOCKS=${LOCKS:-/tmp/mqar_blocks_locks}
LRS=(3e-3 1e-2)
DELTA=(deltanet gated_deltanet gla mamba2)
REST=(gla_core hgrn2 mamba retnet linear_attention rwkv4 rwkv6 lru s5)
# Mamba's selective decay is a full K×D one, which on CPU falls back to the sequential reference
# backend (several seconds per step here): its cells go last.
SLOW=(mamba)

jobs() {  # one line per cell: model slice lr, the short slices first, the slow models last
  for slice in 64:4 128:8; do
    for m in "${DELTA[@]}" "${REST[@]}"; do
      [[ " ${SLOW[*]} " == *" $m "* ]] && continue
      for lr in "${LRS[@]}"; do echo "$m $slice $lr"; done
    done
  done
  for m in "${DELTA[@]}"; do for lr in "${LRS[@]}"; do echo "$m 256:16 $lr"; done; done
  for slice in 64:4 128:8; do
    for m in "${SLOW[@]}"; do for lr in "${LRS[@]}"; do echo "$m $slice $lr"; done; done
  done
}

config_for() {  # HGRN2's default expand_ratio (128) does not divide d_model 64: 16 gives 4 heads.
  if [ "$1" = hgrn2 ]; then echo configs/mqar.py:model.mixer_options.expand_ratio=16
  else echo configs/mqar.py; fi
}

cell() {  # trains one cell (skipped by sweep.py when its summary.json exists)
  local m=$1 slice=$2 lr=$3
  $PY sweep.py --config "$(config_for "$m")" --sweepdir "$DIR" --models "$m" --d_models 64 \
    --slices "$slice" --lrs "$lr" > /dev/null
}

worker() {  # claims cells with an atomic mkdir; $1 = the core it is pinned to
  jobs | grep -E -- "${ONLY:-.}" | while read -r m slice lr; do
    if [ -n "${DEADLINE:-}" ] && [ "$(date +%s)" -ge "$(date -d "$DEADLINE" +%s)" ]; then
      echo "worker $1: past DEADLINE $DEADLINE, claims nothing more"; break
    fi
    mkdir "$LOCKS/$m-$slice-$lr" 2>/dev/null || continue
    echo "$(date -u +%H:%M) worker $1: $m $slice lr $lr"
    local pin=()
    [ "$WORKERS" -gt 1 ] && pin=(taskset -c "$1")
    "${pin[@]}" bash -c "$(declare -f cell config_for); PY=$PY DIR=$DIR cell $m $slice $lr" \
      || echo "worker $1: $m $slice lr $lr failed"
  done
}

report() {  # the table of every finished cell, partial or not
  $PY docs/blocks/mqar_table.py
}

if [ "${1:-}" = report ]; then report; exit; fi
rm -rf "$LOCKS" && mkdir -p "$LOCKS"
for ((w = 0; w < WORKERS; w++)); do worker "$w" & done
wait
report
