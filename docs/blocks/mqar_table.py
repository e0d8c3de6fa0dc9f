"""Writes docs/blocks/mqar.md from every finished cell under docs/blocks/mqar_runs/.

    python docs/blocks/mqar_table.py [--runs docs/blocks/mqar_runs] [--out docs/blocks/mqar.md]

One row per model (in the order of mqar_blocks.sh), one column per slice: the best test accuracy
over the learning rates finished ("*": a learning rate of the sweep still missing; "–": none),
then every finished cell. Called by `docs/blocks/mqar_blocks.sh report`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

MODELS = (
    "deltanet gated_deltanet gla mamba2 gla_core hgrn2 mamba retnet linear_attention rwkv4 rwkv6 "
    "lru s5"
).split()
DELTA = MODELS[:4]
SLICES = ((64, 4), (128, 8), (256, 16))
LRS = (0.003, 0.01)
NAME = re.compile(r"(?P<model>.+)_d64_seq(?P<seq>\d+)_kv(?P<kv>\d+)_lr(?P<lr>[0-9.e-]+)$")

HEADER = """# MQAR with the full published blocks{partial}

Made by `docs/blocks/mqar_blocks.sh` (resumable; each finished cell's `summary.json` and
`metrics.jsonl` are committed under `docs/blocks/mqar_runs/`; this table by
`docs/blocks/mqar_table.py`): d_model 64, the default budget of `configs/mqar.py` (3000 steps of
batch 64, early stop at test accuracy 0.99), test accuracy, best of lr {{3e-3, 1e-2}}; (256, 16)
only for the delta-rule comparison (DeltaNet, Gated DeltaNet, GLA, Mamba-2). Single-core
workers on the 2-core CPU, often beside test suites or other training (wall times in the
summaries are not comparable). {done} of the {total} cells finished.

Best test accuracy over the learning rates finished (– : no cell finished; * : a learning rate
still missing).
"""


def cells(runs: Path) -> dict:
    found = {}
    for summary in sorted(runs.glob("*/summary.json")):
        match = NAME.match(summary.parent.name)
        if match is None:
            continue
        data = json.loads(summary.read_text())
        key = (match["model"], (int(match["seq"]), int(match["kv"])), float(match["lr"]))
        value = next(iter(data["test"].values()), None) if data.get("test") else None
        found[key] = (value, data.get("final_step"))
    return found


def planned() -> list[tuple]:
    out = []
    for model in MODELS:
        for sl in SLICES if model in DELTA else SLICES[:2]:
            out += [(model, sl, lr) for lr in LRS]
    return out


def render(found: dict) -> str:
    plan = planned()
    done = sum(1 for key in plan if key in found)
    lines = [
        HEADER.format(
            partial="" if done == len(plan) else " (partial)", done=done, total=len(plan)
        ),
        "| model | " + " | ".join(f"seq {s} kv {k}" for s, k in SLICES) + " |",
        "|---|" + "---:|" * len(SLICES),
    ]
    for model in MODELS:
        row = []
        for sl in SLICES:
            if model not in DELTA and sl == SLICES[2]:
                row.append("")
                continue
            got = [(found[(model, sl, lr)][0] or 0.0, lr) for lr in LRS if (model, sl, lr) in found]
            if not got:
                row.append("–")
                continue
            value, lr = max(got)
            row.append(f"{value:.3f} (lr {lr:g}){'*' if len(got) < len(LRS) else ''}")
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Every finished cell:",
        "",
        "| model | slice | lr | test accuracy | steps (early stop at 0.99) |",
        "|---|---|---:|---:|---:|",
    ]
    for (model, (s, k), lr), (value, steps) in sorted(found.items()):
        shown = "diverged" if value is None else f"{value:.4f}"
        lines.append(f"| {model} | seq {s} kv {k} | {lr:g} | {shown} | {steps} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("docs/blocks/mqar_runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/blocks/mqar.md"))
    args = parser.parse_args()
    if not args.runs.is_dir():
        raise SystemExit(f"error: no run directory {args.runs}")
    args.out.write_text(render(cells(args.runs)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
