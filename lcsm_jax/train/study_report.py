"""A study's table (`NAME.md`) and plot (`NAME.png`) from its run records.

Per (cell, slice): the value of each lr is the mean over its finished seeds; the table shows the
best lr's mean ± the seeds' standard deviation, the lr, and the seeds' spread (max - min, with
the count); a diverged run counts as the worst value. Runs not finished yet show as "–" and are
counted in the header, so a partial table says so.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lcsm_jax.train.study import Budget, Study, plan  # noqa: E402


def _slice_key(r: dict) -> tuple:
    return tuple(r["slice"] or ())


def _slice_label(s: tuple) -> str:
    return f"seq {s[0]} kv {s[1]}" if s else "value"


def best(records: list[dict]) -> dict:
    """{(cell, slice): dict(value, lr, spread, std, seeds, per_lr)} over the finished runs (std:
    the seeds' sample standard deviation at the chosen lr)."""
    grouped: dict = {}
    for r in records:
        grouped.setdefault((r["cell"], _slice_key(r)), {}).setdefault(r["lr"], []).append(r)
    out = {}
    for key, by_lr in grouped.items():
        maximize = next(iter(by_lr.values()))[0]["maximize"]
        worst = -math.inf if maximize else math.inf
        per_lr = {}
        for lr, runs in by_lr.items():
            values = [worst if r["value"] is None else r["value"] for r in runs]
            per_lr[lr] = (statistics.fmean(values), values)
        pick = (max if maximize else min)(per_lr, key=lambda lr: per_lr[lr][0])
        mean, values = per_lr[pick]
        finite = [v for v in values if math.isfinite(v)]
        out[key] = dict(
            value=mean if math.isfinite(mean) else None,
            lr=pick,
            spread=(max(finite) - min(finite)) if len(finite) > 1 else None,
            std=statistics.stdev(finite) if len(finite) > 1 else None,
            seeds=len(values),
            per_lr={lr: m for lr, (m, _) in per_lr.items()},
        )
    return out


def markdown(study: Study, budget: Budget, records: list[dict], *, header: str = "") -> str:
    specs = plan(study, budget)
    slices = [tuple(s) for s in budget.slices] or [()]
    table = best(records)
    metric = next((r["metric"] for r in records if r["metric"]), budget.metric or "metric")
    maximize = next((r["maximize"] for r in records), True)
    lines = [f"# {study.title}", "", study.claim, ""]
    if header:
        lines += [header, ""]
    lines += [
        f"Budget `{budget.name}`: {len(records)} of {len(specs)} runs finished; "
        f"{metric} ({'higher' if maximize else 'lower'} is better) at the best of lr "
        f"{{{', '.join(f'{lr:g}' for lr in budget.lrs)}}}, mean over seeds "
        f"{{{', '.join(map(str, budget.seeds))}}} ± their standard deviation; spread = max - min "
        "over the seeds (their count).",
    ]
    if budget.note:
        lines += ["", budget.note]
    head = "| cell |"
    rule = "|---|"
    for s in slices:
        label = _slice_label(s)
        head += f" {label} | lr | spread |"
        rule += "---:|---:|---:|"
    lines += ["", head, rule]
    for cell in study.cells:
        row = f"| {cell.label} |"
        for s in slices:
            b = table.get((cell.label, s))
            if b is None:
                row += " – | | |"
                continue
            value = "diverged" if b["value"] is None else f"{b['value']:.3f}"
            if b["value"] is not None and b["std"] is not None:
                value += f" ± {b['std']:.3f}"
            spread = "" if b["spread"] is None else f"{b['spread']:.3f} ({b['seeds']})"
            row += f" {value} | {b['lr']:g} | {spread} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def metric_label(metric: str) -> str:
    if metric.startswith("seq") and "_kv" in metric:
        return "MQAR test accuracy"
    return metric.replace("_", " ")


def plot(study: Study, budget: Budget, records: list[dict], path) -> None:
    slices = [tuple(s) for s in budget.slices] or [()]
    table = best(records)
    metric = next((r["metric"] for r in records if r["metric"]), budget.metric or "metric")
    maximize = next((r["maximize"] for r in records), True)
    groups = list(dict.fromkeys(c.group for c in study.cells))
    colours = {g: f"C{i}" for i, g in enumerate(groups)}
    height = max(3.0, 0.32 * len(study.cells) + 1.8)
    fig, axes = plt.subplots(1, len(slices), figsize=(4.2 * len(slices) + 2.5, height))
    axes = [axes] if len(slices) == 1 else list(axes)
    ys = list(range(len(study.cells)))[::-1]
    values = [b["value"] for b in table.values() if b["value"] is not None]
    for ax, s in zip(axes, slices, strict=True):
        for y, cell in zip(ys, study.cells, strict=True):
            b = table.get((cell.label, s))
            if b is None or b["value"] is None:
                ax.text(0, y, " not run yet" if b is None else " diverged", va="center", fontsize=7)
                continue
            half = (b["spread"] or 0) / 2
            ax.barh(y, b["value"], color=colours[cell.group], xerr=half or None, capsize=2)
        ax.set_yticks(ys, [c.label for c in study.cells], fontsize=8)
        ax.set_title(_slice_label(s) if s else "", fontsize=9)
        better = "higher" if maximize else "lower"
        ax.set_xlabel(f"{metric_label(metric)} ({better} is better)", fontsize=8)
        if values and 0 <= min(values) and max(values) <= 1 and maximize:
            ax.set_xlim(0, 1)
    if len(groups) > 1:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
        fig.legend(handles, groups, fontsize=7, loc="lower center", ncol=len(groups))
    fig.suptitle(
        f"{study.title}\nbudget {budget.name}: bar = mean over seeds at the best lr, "
        "whisker = spread over seeds",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.06 if len(groups) > 1 else 0, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(study: Study, budget: Budget, records: list[dict], out, *, header: str = ""):
    """Writes out/NAME.md, out/NAME.png and out/NAME/records.json; returns the two paths."""
    out = Path(out)
    (out / study.name).mkdir(parents=True, exist_ok=True)
    table, figure = out / f"{study.name}.md", out / f"{study.name}.png"
    table.write_text(markdown(study, budget, records, header=header))
    (out / study.name / "records.json").write_text(json.dumps(records, indent=2))
    plot(study, budget, records, figure)
    return table, figure
