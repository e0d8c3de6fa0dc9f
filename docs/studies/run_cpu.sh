#!/usr/bin/env bash
# Every LCSM study at --budget cpu, seed 0 of every study before seed 1 of any, on one core
# (the other stays free for other work), resumably: rerun to continue, a finished run is never
# trained again and a killed one resumes from its checkpoint. Each study's table and plot are
# rewritten after each pass, from every run finished so far.
#   docs/studies/run_cpu.sh                   # MQAR studies, then the LM ones
#   DEADLINE=16:50 docs/studies/run_cpu.sh    # starts no study pass after 16:50
#   CORE=0 docs/studies/run_cpu.sh            # pin to another core
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CORE=${CORE:-1}
MQAR=(parameterisation data_dependence oscillation activation tau)
LM=(data_dependence oscillation)

late() { [ -n "${DEADLINE:-}" ] && [ "$(date +%s)" -ge "$(date -d "$DEADLINE" +%s)" ]; }

pass() {  # task seed study...
  local task=$1 seed=$2; shift 2
  for study in "$@"; do
    if late; then echo "past DEADLINE $DEADLINE: stops"; exit 0; fi
    echo "$(date -u +%H:%M) $study $task seed $seed"
    taskset -c "$CORE" "$PY" study.py --study "$study" --task "$task" --budget cpu \
      --out "docs/studies/$task" --seeds "$seed" > "/tmp/study_${task}_${study}.log" 2>&1 \
      || echo "$study $task seed $seed failed: see /tmp/study_${task}_${study}.log"
  done
}

pass mqar 0 "${MQAR[@]}"
pass lm 0 "${LM[@]}"
pass mqar 1 "${MQAR[@]}"
pass lm 1 "${LM[@]}"
for study in "${MQAR[@]}"; do "$PY" study.py --study "$study" --task mqar --budget cpu \
  --out docs/studies/mqar --report > /dev/null; done
for study in "${LM[@]}"; do "$PY" study.py --study "$study" --task lm --budget cpu \
  --out docs/studies/lm --report > /dev/null; done
