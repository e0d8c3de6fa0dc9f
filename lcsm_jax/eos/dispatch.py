"""How `auto` picks a backend: a measured table per platform, the hand-written rules as fallback.

A problem's class is its decay structure, read form (vector or elementwise), dtype, and K, D and
T rounded to a power of two. `tables/<platform>.json` (written by `python
benchmarks/eos_backends.py --write-table`) maps measured classes to the fastest backend there
(forward+backward median, every backend that supports the class timed in the same run). A class
the table lacks takes the entry of the same class at the nearest measured T; failing that, the
rules: chunked wherever it applies, else the recurrent backend (a sequential scan with a
checkpointed gradient) on CPU and the associative scan on GPU/TPU. Pallas is chosen only where a
table saw it win.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from importlib import resources

import jax

from lcsm_jax.eos import chunked
from lcsm_jax.eos.inputs import Problem, varying_axes

TABLE_DIR = "tables"
# Backends a table may name; "auto" is resolved, never stored.
MEASURABLE = ("reference", "associative", "chunked", "pallas", "recurrent")
# Sequences this short, in a class the table has not measured at this length, run sequentially:
# there is at most one chunk to parallelise over, and the sequential scan compiles several times
# faster than the chunked backend's (a T = 5 lcsm layer's first jitted gradient: 3 s against
# 17 s on CPU).
SHORT_T = 16


def bucket(n: int) -> int:
    """n rounded to the nearest power of two (in log scale)."""
    return 1 << max(round(math.log2(max(n, 1))), 0)


@dataclasses.dataclass(frozen=True)
class ProblemClass:
    structure: str
    read: str  # "vector" or "elementwise"
    dtype: str  # the accumulation dtype: float32, complex64, float64, complex128
    K: int
    D: int
    T: int

    @classmethod
    def of(cls, p: Problem) -> ProblemClass:
        B, T, H, K = p.e.shape
        return cls(
            structure=p.structure,
            read="elementwise" if p.elementwise_read else "vector",
            dtype=str(p.e.dtype),
            K=bucket(K),
            D=bucket(p.i.shape[-1]),
            T=bucket(T),
        )

    def without_t(self) -> tuple:
        return (self.structure, self.read, self.dtype, self.K, self.D)


@dataclasses.dataclass(frozen=True)
class Choice:
    """What `auto` runs for a problem, and why."""

    backend: str
    chunk_size: int | None
    reason: str


@functools.cache
def table(platform: str) -> dict[ProblemClass, dict]:
    """The measured table of `platform` ({} when none is committed)."""
    path = resources.files("lcsm_jax.eos").joinpath(TABLE_DIR, f"{platform}.json")
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    entries = {}
    for entry in data["entries"]:
        key = ProblemClass(**{f.name: entry[f.name] for f in dataclasses.fields(ProblemClass)})
        entries[key] = entry
    return entries


def _rules(p: Problem, platform: str) -> Choice:
    if chunked.unsupported_reason(p) is None:
        return Choice("chunked", None, "rule: chunked wherever the structure allows it")
    fallback = "recurrent" if platform == "cpu" else "associative"
    why = (
        "sequential scan with a checkpointed gradient on CPU"
        if platform == "cpu"
        else "log-depth scan on GPU/TPU"
    )
    return Choice(fallback, None, f"rule: chunked does not apply; {fallback} ({why})")


def _describe(entry: dict, where: str) -> str:
    times = ", ".join(f"{b} {ms:.1f} ms" for b, ms in sorted(entry["fwd_bwd_ms"].items()))
    return f"table ({where}): fastest fwd+bwd measured at T={entry['T']}: {times}"


def choose(p: Problem, platform: str) -> Choice:
    """The backend (and chunk size) `auto` runs `p` with on `platform`."""
    entries = table(platform)
    key = ProblemClass.of(p)
    entry, where = entries.get(key), "this class"
    if entry is None and p.e.shape[1] <= SHORT_T:
        return Choice("reference", None, f"rule: T <= {SHORT_T} runs sequentially")
    if entry is None:
        same = [k for k in entries if k.without_t() == key.without_t()]
        if same:
            nearest = min(same, key=lambda k: (abs(math.log2(k.T / key.T)), -k.T))
            entry, where = entries[nearest], f"nearest measured T={nearest.T}"
    # An entry holds only backends that support its class; the check guards a hand-edited table.
    if entry is None or (entry["backend"] == "chunked" and chunked.unsupported_reason(p)):
        return _rules(p, platform)
    if entry["backend"] == "pallas" and in_shard_map(p):
        rule = _rules(p, platform)
        why = "inside jax.shard_map the Pallas kernels' outputs carry no mesh-axis types"
        return Choice(rule.backend, None, f"{why}; {rule.reason}")
    return Choice(entry["backend"], entry.get("chunk_size"), _describe(entry, where))


def in_shard_map(p: Problem) -> bool:
    """True when an input of `p` varies over a mesh axis (so the call is inside shard_map)."""
    return any(varying_axes(x) for x in jax.tree.leaves(p))
