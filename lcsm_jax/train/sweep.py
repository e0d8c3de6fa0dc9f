"""MQAR sweeps: model × d_model × (seq_len, num_kv) × learning rate, resumable.

Each cell trains in its own run directory; a cell whose `summary.json` exists is not trained again
and an interrupted cell resumes from its checkpoints, so rerunning the same command continues the
sweep. The report keeps, per (model, d_model, slice), the best accuracy over learning rates (the
paper's protocol: recurrent models succeed only in a narrow lr window).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lcsm_jax.train import loop  # noqa: E402
from lcsm_jax.train.tasks.mqar import slice_name  # noqa: E402


def cell_name(model: str, d_model: int, seq_len: int, num_kv: int, lr: float) -> str:
    return f"{model}_d{d_model}_seq{seq_len}_kv{num_kv}_lr{lr:g}"


def cell_config(base, model, d_model, seq_len, num_kv, lr):
    config = base.copy_and_resolve_references()
    config.model.mixer, config.model.d_model, config.optim.lr = model, d_model, float(lr)
    config.data.seq_len, config.data.num_kv = seq_len, num_kv
    return config


def run(base, sweepdir, models, d_models, slices, lrs, *, log=print) -> list[dict]:
    """Trains every missing cell; returns one result record per cell."""
    sweepdir = Path(sweepdir)
    results = []
    for model, d_model, (seq_len, num_kv), lr in itertools.product(models, d_models, slices, lrs):
        name = cell_name(model, d_model, seq_len, num_kv, lr)
        workdir = sweepdir / name
        summary_path = workdir / "summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            log(f"[done] {name}")
        else:
            log(f"[train] {name}")
            try:
                summary = loop.train(
                    cell_config(base, model, d_model, seq_len, num_kv, lr), workdir
                )
            except loop.NonFiniteLossError as err:  # a diverged lr is a result, not a crash
                summary = {"test": {slice_name(seq_len, num_kv): 0.0}, "stopped": str(err)}
                workdir.mkdir(parents=True, exist_ok=True)
                summary_path.write_text(json.dumps(summary, indent=2))
        accuracy = summary["test"][slice_name(seq_len, num_kv)]
        results.append(
            dict(
                model=model,
                d_model=d_model,
                seq_len=seq_len,
                num_kv=num_kv,
                lr=lr,
                accuracy=accuracy,
            )
        )
    return results


def best_over_lr(results: list[dict]) -> dict:
    """{(model, d_model, seq_len, num_kv): (accuracy, lr)} with the best lr of each cell."""
    best = {}
    for r in results:
        key = (r["model"], r["d_model"], r["seq_len"], r["num_kv"])
        if key not in best or r["accuracy"] > best[key][0]:
            best[key] = (r["accuracy"], r["lr"])
    return best


def markdown_table(results: list[dict]) -> str:
    best = best_over_lr(results)
    slices = sorted({(k[2], k[3]) for k in best})
    rows = sorted({(k[0], k[1]) for k in best})
    head = "| model | d_model | " + " | ".join(f"seq {s} kv {kv}" for s, kv in slices) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(slices)]
    for model, d_model in rows:
        cells = []
        for s, kv in slices:
            acc, lr = best.get((model, d_model, s, kv), (float("nan"), None))
            cells.append(f"{acc:.3f} (lr {lr:g})" if lr is not None else "–")
        lines.append(f"| {model} | {d_model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path) -> None:
    best = best_over_lr(results)
    slices = sorted({(k[2], k[3]) for k in best})
    models = sorted({k[0] for k in best})
    fig, axes = plt.subplots(1, len(slices), figsize=(4 * len(slices), 3.2), squeeze=False)
    for ax, (s, kv) in zip(axes[0], slices, strict=True):
        for model in models:
            points = sorted(
                (k[1], v[0]) for k, v in best.items() if k[0] == model and k[2:] == (s, kv)
            )
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=model)
        ax.set(
            title=f"seq {s}, kv {kv}", xlabel="d_model", ylabel="accuracy (best lr)", ylim=(0, 1.02)
        )
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
