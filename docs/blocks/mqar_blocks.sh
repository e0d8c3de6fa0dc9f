#!/usr/bin/env bash
# MQAR with every full block of the catalogue (and the GLA EOS core for reference) at
# (seq_len 64, num_kv 4) and (128, 8), d_model 64, the default budget of configs/mqar.py
# (3000 steps of batch 64, early stop at 0.99), best of lr {3e-3, 1e-2}; the delta-rule blocks
# with GLA and Mamba-2 also at (256, 16) (issue 19). Resumable: rerun to continue; finished cells
# are skipped and an interrupted one resumes from its checkpoint. Writes
# runs/blocks_mqar/results.md, copied to docs/blocks/mqar.md (and .png).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DIR=${DIR:-runs/blocks_mqar}
LRS=3e-3,1e-2
MODELS=gla_core,gla,mamba,mamba2,retnet,linear_attention,rwkv4,rwkv6,lru,s5,deltanet,gated_deltanet
DELTA=gla,mamba2,deltanet,gated_deltanet
for slice in 64:4 128:8; do
  # HGRN2's default expand_ratio (128) does not divide d_model 64: 16 gives 4 heads.
  $PY sweep.py --config configs/mqar.py:model.mixer_options.expand_ratio=16 --sweepdir "$DIR" \
    --models hgrn2 --d_models 64 --slices "$slice" --lrs "$LRS"
  $PY sweep.py --config configs/mqar.py --sweepdir "$DIR" --models "$MODELS" --d_models 64 \
    --slices "$slice" --lrs "$LRS"
done
$PY sweep.py --config configs/mqar.py --sweepdir "$DIR" --models "$DELTA" --d_models 64 \
  --slices 256:16 --lrs "$LRS"
# The table over every cell (finished cells are read, nothing is retrained).
$PY sweep.py --config configs/mqar.py --sweepdir "$DIR" --models "$MODELS,hgrn2" --d_models 64 \
  --slices 64:4,128:8 --lrs "$LRS"
cp "$DIR/results.md" docs/blocks/mqar.md
cp "$DIR/results.png" docs/blocks/mqar.png
$PY sweep.py --config configs/mqar.py --sweepdir "$DIR" --models "$DELTA" --d_models 64 \
  --slices 64:4,128:8,256:16 --lrs "$LRS"
cp "$DIR/results.md" docs/blocks/mqar_delta.md
cp "$DIR/results.png" docs/blocks/mqar_delta.png
