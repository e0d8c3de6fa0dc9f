"""Measures the EOS backends on a grid of problem classes and writes `auto`'s dispatch table.

    python benchmarks/eos_backends.py --write-table            # this platform, the default grid
    python benchmarks/eos_backends.py --write-table --quick    # a smoke run (not committed)

Every backend that supports a class (pallas only off CPU, where it is not interpreted), and the
chunked backend at several chunk sizes, runs forward+backward in a fresh process per row
(medians of --repeats, compile time and XLA's peak-memory estimate recorded). The fastest row
of each class is its entry; all the times are kept in the entry, so the table shows by how much
it won. Output: lcsm_jax/eos/tables/<platform>.json, read by `lcsm_jax/eos/dispatch.py`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform as host
from pathlib import Path

import jax

from lcsm_jax.eos import dispatch

TABLES = Path(__file__).resolve().parents[1] / "lcsm_jax" / "eos" / "tables"
CHUNK_SIZES = (32, 64, 128)
T_GRID = (1024, 4096)
# (structure, read, B, H, K, D): the shapes the library's layers and solvers hand the core.
CLASSES = (
    ("d", "vector", 4, 1, 1, 256),  # K = 1 elementwise recurrence: LrcSSM's Newton iterations
    ("d", "vector", 4, 1, 1, 64),
    ("scalar", "vector", 4, 1, 1, 256),  # a channel-wise RNN with one gate per step
    ("none", "vector", 4, 4, 64, 64),  # linear attention
    ("scalar", "vector", 4, 4, 64, 64),  # RetNet, Mamba-2
    ("k", "vector", 4, 4, 64, 64),  # GLA, the paper's o_type 1
    ("d", "vector", 4, 4, 64, 64),
    ("separable", "vector", 4, 4, 64, 64),
    ("product", "vector", 4, 1, 16, 256),  # Mamba-1's exp(Δ ⊗ A), factored (selective_scan)
    ("product", "vector", 4, 4, 64, 64),  # the paper's o_types 6-9 and SSM (c_type 0)
    ("full", "vector", 4, 1, 16, 256),  # a K×D log-decay array
    ("full", "elementwise", 4, 1, 16, 256),  # data-independent SSMs with a K×D read
)
RECURRENT_BLOCKS = (16, 64)


def backends_for(structure: str, read: str, platform: str) -> list[tuple[str, int | None]]:
    rows = [("reference", None), ("associative", None)]
    rows += [("recurrent", c) for c in RECURRENT_BLOCKS]
    if structure not in ("full", "product") and read == "vector":
        rows += [("chunked", c) for c in CHUNK_SIZES]
    if platform != "cpu":
        rows.append(("pallas", None))
    return rows


def write(run_row, repeats: int, max_gib: float, quick: bool = False, only=None) -> Path:
    """Runs the grid with `run_row(job) -> row dict | None` and writes the table. With `only` (a
    set of structures) just those classes are measured, and their entries replace the same
    classes' in the committed table (the others are kept)."""
    platform = jax.default_backend()
    classes = CLASSES[:2] if quick else CLASSES
    if only:
        classes = tuple(c for c in classes if c[0] in only)
    t_grid = (256,) if quick else T_GRID
    entries = []
    for structure, read, B, H, K, D in classes:
        for T in t_grid:
            rows = []
            for backend, chunk in backends_for(structure, read, platform):
                job = (structure, backend, (B, T, H, K, D), repeats, max_gib, read == "elementwise")
                row = run_row((*job, chunk))
                if row is not None and "skip" not in row:
                    rows.append(row)
                    print(f"  {structure} {read} K={K} D={D} T={T} {backend} chunk={chunk}: "
                          f"{row['fwd_bwd_ms']:.1f} ms", flush=True)  # fmt: skip
            if rows:
                entries.append(_entry(structure, read, B, H, K, D, T, rows))
    TABLES.mkdir(parents=True, exist_ok=True)
    path = TABLES / (f"{platform}.quick.json" if quick else f"{platform}.json")
    if only and path.exists():
        key = lambda e: tuple(e[k] for k in ("structure", "read", "dtype", "K", "D", "T"))  # noqa: E731
        new = {key(e) for e in entries}
        kept = [e for e in json.loads(path.read_text())["entries"] if key(e) not in new]
        entries = kept + entries
    path.write_text(json.dumps(_document(platform, repeats, entries), indent=1) + "\n")
    dispatch.table.cache_clear()
    return path


def _label(row) -> str:
    return row["backend"] if row["chunk_size"] is None else f"{row['backend']}@{row['chunk_size']}"


def _entry(structure, read, B, H, K, D, T, rows) -> dict:
    best = min(rows, key=lambda r: r["fwd_bwd_ms"])
    return {
        "structure": structure,
        "read": read,
        "dtype": "float32",
        "K": dispatch.bucket(K),
        "D": dispatch.bucket(D),
        "T": dispatch.bucket(T),
        "backend": best["backend"],
        "chunk_size": best["chunk_size"],
        "shape": {"B": B, "H": H, "K": K, "D": D, "T": T},
        "fwd_bwd_ms": {_label(r): round(r["fwd_bwd_ms"], 2) for r in rows},
        "fwd_ms": {_label(r): round(r["fwd_ms"], 2) for r in rows},
        "compile_s": {_label(r): round(r["compile_s"], 2) for r in rows},
        "peak_mib": {_label(r): r["peak_mib"] and round(r["peak_mib"], 1) for r in rows},
    }


def _document(platform: str, repeats: int, entries: list) -> dict:
    return {
        "platform": platform,
        "devices": [str(d.device_kind) for d in jax.devices()[:1]],
        "host": f"{host.machine()}, {os.cpu_count()} CPUs",
        "measured": datetime.date.today().isoformat(),
        "command": "python benchmarks/eos_backends.py --write-table",
        "criterion": f"median fwd+bwd wall time of {repeats} runs, a fresh process per row",
        "entries": entries,
    }
