#!/usr/bin/env bash
# Why `m2` (the Hyena long-conv Monarch Mixer) stayed on MQAR's 0.25 plateau: the same model on
# configs/mqar.py (seq 64, 4 kv pairs, d_model 64, 3000 steps, early stop at 0.99) with the
# filter's positions normalised by max_len = 2048 (the M2Config default, so 64 tokens span 3% of
# the filter's range and its kernel is nearly flat over them) against max_len = 64 (the
# sequence, as zoology's Hyena sets l_max = input_seq_len), and zoology's filter (emb_dim 3, sine
# frequency 1), each at two learning rates. Resumable (train.py resumes a run from its workdir;
# a run with a summary.json is skipped). Summaries land in docs/m2/mqar_runs/<name>/.
#   CORE=0 docs/m2/mqar_plateau.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CORE=${CORE:-0}
DIR=docs/m2/mqar_runs
OPT=model.mixer_options
run() {  # name lr overrides...
  local name=$1 lr=$2; shift 2
  local extra
  extra=$(IFS=,; echo "$*")
  [ -f "$DIR/$name/summary.json" ] && { echo "$name: done"; return; }
  echo "$(date -u +%H:%M) $name"
  taskset -c "$CORE" "$PY" train.py --workdir "$DIR/$name" \
    --config "configs/mqar.py:model=m2,lr=$lr${extra:+,$extra}" > "/tmp/m2_$name.log" 2>&1 \
    || echo "$name failed: see /tmp/m2_$name.log"
}
for lr in 3e-3 1e-3; do
  run "maxlen2048_lr$lr" "$lr"
  run "maxlen64_lr$lr" "$lr" "$OPT.max_len=64"
  run "zoology_filter_lr$lr" "$lr" "$OPT.max_len=64" "$OPT.filter_emb_dim=3" "$OPT.filter_freq=1.0"
done
