#!/usr/bin/env bash
# M2 against GLA and softmax attention at (about) equal parameters, on MQAR (seq 64, 4 kv
# pairs, configs/mqar.py: 3000 steps, early stop at 0.99) and on KJV language modelling
# (configs/lm.py's cpu size), best of lr {1e-3, 3e-3, 1e-2} on MQAR.
#
# Widths for equal parameters (whole model, 2 blocks, vocabulary 512, short conv 4):
#   m2 d_model 128: 242k; gla d_model 144: 249k; attention d_model 144 (2 heads of 72): 250k.
# m2 at d_model 128 is the smallest width that left the plateau in docs/m2/mqar_plateau.sh.
# On LM every row keeps the cpu size (d_model 128, 4 blocks, GLU channel mixer, 4096-token BPE,
# where the embedding dominates); the table prints each model's parameter count.
#
# Resumable (a run with a summary.json is skipped; train.py resumes a killed one from its
# workdir). Summaries land in docs/m2/equal_runs/<name>/; `report` prints the table.
#   CORE=0 docs/m2/equal_params.sh
#   docs/m2/equal_params.sh report
#   STEPS=4 DIR=/tmp/m2_smoke docs/m2/equal_params.sh    # every run for a few steps (a check)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CORE=${CORE:-0}
DIR=${DIR:-docs/m2/equal_runs}
STEPS=${STEPS:-}
MQAR_LRS=(3e-3 1e-2 1e-3)

run() {  # name config overrides...
  local name=$1 config=$2; shift 2
  local extra
  extra=$(IFS=,; echo "$*${STEPS:+,steps=$STEPS,optim.warmup_steps=0}")
  [ -f "$DIR/$name/summary.json" ] && { echo "$name: done"; return; }
  echo "$(date -u +%H:%M) $name"
  taskset -c "$CORE" "$PY" train.py --workdir "$DIR/$name" --config "$config:$extra" \
    > "/tmp/m2eq_$name.log" 2>&1 || echo "$name failed: see /tmp/m2eq_$name.log"
}

report() {
  "$PY" - "$DIR" <<'EOF'
import json, sys
from pathlib import Path
rows = {}
for s in sorted(Path(sys.argv[1]).glob("*/summary.json")):
    name = s.parent.name
    model, task = name.split("_")[0], name.split("_")[1]
    summary = json.loads(s.read_text())
    test = summary.get("test") or {}
    bpb = [k for k in test if k.endswith("bits_per_byte")]
    value = test[bpb[0]] if bpb else test.get(summary["main_metric"])
    best = rows.get((model, task))
    better = value is not None and (best is None or (value > best[0]) == (task == "mqar"))
    if best is None or better:
        rows[(model, task)] = (value, name, summary.get("seconds"))
print("| model | task | MQAR test accuracy / LM validation bits per byte (best over lr) | run |"
      " wall s |\n|---|---|---:|---|---:|")
for (model, task), (value, name, secs) in sorted(rows.items()):
    shown = "diverged" if value is None else f"{value:.4f}"
    print(f"| {model} | {task} | {shown} | {name} | {secs or 0:.0f} |")
EOF
}

if [ "${1:-}" = report ]; then report; exit; fi
for lr in "${MQAR_LRS[@]}"; do
  run "m2_mqar_d128_lr$lr" configs/mqar.py model=m2 d_model=128 lr="$lr"
  run "gla_mqar_d144_lr$lr" configs/mqar.py model=gla d_model=144 lr="$lr"
  run "attention_mqar_d144_lr$lr" configs/mqar.py model=attention d_model=144 \
    model.num_heads=2 lr="$lr"
done
run m2_lm_cpu configs/lm.py model=m2 "model.mixer_options={'max_len':128}"
run gla_lm_cpu configs/lm.py model=gla
run attention_lm_cpu configs/lm.py model=attention model.num_heads=4
report
