"""Sweeps over any task: model × width × (seq_len, num_kv) × learning rate, resumable.

Each cell is the base config with `key=value` overrides (the config file's aliases: model,
d_model, seq_len, num_kv, lr) and trains in its own run directory; a cell whose `summary.json`
exists is not trained again and an interrupted cell resumes from its checkpoints, so rerunning
the same command continues the sweep. The report keeps, per (model, d_model, slice), the best
value of the task's main metric over learning rates (the LCSM paper's protocol: recurrent models
succeed only in a narrow lr window). A diverged cell is a result (no value), not a crash.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lcsm_jax.train import experiment, loop, overrides  # noqa: E402


def cell_name(model: str, d_model: int, slice_: tuple[int, int] | None, lr: float) -> str:
    part = "" if slice_ is None else f"_seq{slice_[0]}_kv{slice_[1]}"
    return f"{model}_d{d_model}{part}_lr{lr:g}"


def cell_overrides(model, d_model, slice_, lr) -> str:
    items = [f"model={model}", f"d_model={d_model}", f"lr={lr!r}"]
    if slice_ is not None:
        items += [f"seq_len={slice_[0]}", f"num_kv={slice_[1]}"]
    return ",".join(items)


def run(base, aliases, sweepdir, models, d_models, slices, lrs, *, log=print) -> list[dict]:
    """Trains every missing cell; returns one result record per cell. `slices` may be empty
    (the base config's own); `aliases` are the config file's override names."""
    sweepdir = Path(sweepdir)
    results = []
    for model, d_model, slice_, lr in itertools.product(models, d_models, slices or [None], lrs):
        name = cell_name(model, d_model, slice_, lr)
        workdir = sweepdir / name
        summary_path = workdir / "summary.json"
        config = overrides.apply(
            base.copy_and_resolve_references(), cell_overrides(model, d_model, slice_, lr), aliases
        )
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            log(f"[done] {name}")
        else:
            log(f"[train] {name}")
            try:
                summary = loop.train(experiment.translate(config), workdir)
            except loop.NonFiniteLossError as err:  # a diverged lr is a result, not a crash
                summary = {**(err.summary or {}), "test": {}, "stopped": str(err)}
                workdir.mkdir(parents=True, exist_ok=True)
                summary_path.write_text(json.dumps(summary, indent=2))
        metric = summary.get("main_metric")
        results.append(
            dict(
                model=model,
                d_model=d_model,
                slice=list(slice_) if slice_ else None,
                lr=lr,
                metric=metric,
                maximize=summary.get("maximize", True),
                value=summary["test"].get(metric) if metric else None,
            )
        )
    return results


def _better(a: dict, b: dict | None) -> bool:
    if a["value"] is None:
        return False
    if b is None or b["value"] is None:
        return True
    return a["value"] > b["value"] if a["maximize"] else a["value"] < b["value"]


def best_over_lr(results: list[dict]) -> dict:
    """{(model, d_model, slice): the record with the best value over learning rates}."""
    best = {}
    for r in results:
        key = (r["model"], r["d_model"], tuple(r["slice"] or ()))
        if key not in best or _better(r, best[key]):
            best[key] = r
    return best


def _slice_label(slice_: tuple) -> str:
    return f"seq {slice_[0]} kv {slice_[1]}" if slice_ else "value"


def markdown_table(results: list[dict]) -> str:
    best = best_over_lr(results)
    slices = sorted({k[2] for k in best})
    rows = sorted({(k[0], k[1]) for k in best})
    metric = next((r["metric"] for r in results if r["metric"]), "metric")
    lines = [
        f"Best {metric} over learning rates.",
        "",
        "| model | d_model | " + " | ".join(_slice_label(s) for s in slices) + " |",
        "|---|---:|" + "---:|" * len(slices),
    ]
    for model, d_model in rows:
        cells = []
        for s in slices:
            r = best.get((model, d_model, s))
            if r is None:
                cells.append("–")
            elif r["value"] is None:
                cells.append("diverged")
            else:
                cells.append(f"{r['value']:.3f} (lr {r['lr']:g})")
        lines.append(f"| {model} | {d_model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path) -> None:
    best = best_over_lr(results)
    slices = sorted({k[2] for k in best})
    models = sorted({k[0] for k in best})
    metric = next((r["metric"] for r in results if r["metric"]), "metric")
    fig, axes = plt.subplots(1, len(slices), figsize=(4 * len(slices), 3.2), squeeze=False)
    for ax, s in zip(axes[0], slices, strict=True):
        for model in models:
            points = sorted(
                (k[1], r["value"])
                for k, r in best.items()
                if k[0] == model and k[2] == s and r["value"] is not None
            )
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=model)
        ax.set(title=_slice_label(s), xlabel="d_model", ylabel=f"{metric} (best lr)")
        values = [
            r["value"] for r in results if r["value"] is not None and math.isfinite(r["value"])
        ]
        if values and 0 <= min(values) and max(values) <= 1:
            ax.set_ylim(0, 1.02)
        ax.set_xscale("log", base=2)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: list[dict], sweepdir) -> tuple[Path, Path]:
    sweepdir = Path(sweepdir)
    sweepdir.mkdir(parents=True, exist_ok=True)
    table, figure = sweepdir / "results.md", sweepdir / "results.png"
    table.write_text(markdown_table(results))
    (sweepdir / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, figure)
    return table, figure
