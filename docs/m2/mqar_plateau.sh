#!/usr/bin/env bash
# Why `m2` (the Hyena long-conv Monarch Mixer) stays on MQAR's 0.25 plateau. The same model on
# configs/mqar.py (seq 64, 4 kv pairs, 3000 steps, early stop at 0.99), varying one thing at a
# time from the default (d_model 64, lr 3e-3):
# - the filter's position scale: max_len = 2048 (the M2Config default: 64 tokens span 3% of the
#   filter's range, so its kernel is nearly flat over them) against 64 (the sequence, as
#   zoology's Hyena sets l_max = input_seq_len);
# - zoology's filter (emb_dim 3, sine frequency 1) at max_len 64;
# - the learning rate (1e-2, the MQAR default, and 1e-3);
# - the width (d_model 128 and 256): zoology finds that gated convolutions need a width that
#   grows with the number of pairs to recall.
# Resumable (train.py resumes a run from its workdir; a run with a summary.json is skipped).
# Summaries land in docs/m2/mqar_runs/<name>/.
#   CORE=0 docs/m2/mqar_plateau.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CORE=${CORE:-0}
DIR=docs/m2/mqar_runs
OPT=model.mixer_options
run() {  # name overrides...
  local name=$1; shift
  local extra
  extra=$(IFS=,; echo "$*")
  [ -f "$DIR/$name/summary.json" ] && { echo "$name: done"; return; }
  echo "$(date -u +%H:%M) $name"
  taskset -c "$CORE" "$PY" train.py --workdir "$DIR/$name" \
    --config "configs/mqar.py:model=m2,$extra" > "/tmp/m2_$name.log" 2>&1 \
    || echo "$name failed: see /tmp/m2_$name.log"
}
run maxlen2048_lr3e-3 lr=3e-3
run maxlen64_lr3e-3 lr=3e-3 "$OPT.max_len=64"
run zoology_filter_lr3e-3 lr=3e-3 "$OPT.max_len=64" "$OPT.filter_emb_dim=3" "$OPT.filter_freq=1.0"
run d128_lr3e-3 lr=3e-3 d_model=128 "$OPT.max_len=64"
run d128_maxlen2048_lr3e-3 lr=3e-3 d_model=128
run maxlen64_lr1e-2 lr=1e-2 "$OPT.max_len=64"
run d256_lr3e-3 lr=3e-3 d_model=256 "$OPT.max_len=64"
run maxlen64_lr1e-3 lr=1e-3 "$OPT.max_len=64"
