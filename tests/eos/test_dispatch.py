"""`auto`'s dispatch: the committed tables are consistent, a measured class gets its winner
(and chunk size), an unmeasured T takes the nearest measured T, anything else the rules."""

import json
from importlib import resources

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos
from lcsm_jax.eos import dispatch

TABLES = sorted(
    p
    for p in resources.files("lcsm_jax.eos").joinpath("tables").iterdir()
    if p.name.endswith(".json") and not p.name.endswith(".quick.json")
)


def _inputs(structure="d", read="vector", K=1, D=64, T=16, B=1, H=1, dtype=jnp.float32):
    rng = np.random.default_rng(0)
    normal = lambda *s: jnp.asarray(rng.normal(size=s), dtype)  # noqa: E731
    decay = lambda *s: -jnp.abs(normal(*s)) / 8  # noqa: E731
    log_o = {
        "none": 0,
        "scalar": decay(B, T, H, 1, 1),
        "k": decay(B, T, H, K, 1),
        "d": decay(B, T, H, 1, D),
        "separable": eos.Decay(k=decay(B, T, H, K), d=decay(B, T, H, D)),
        "full": decay(B, T, H, K, D),
        "product": eos.ProductDecay(d=-decay(B, T, H, D), p=-jnp.exp(normal(1, 1, H, K, D))),
    }[structure]
    s = normal(B, T, H, K, D) if read == "elementwise" else normal(B, T, H, K)
    return normal(B, T, H, K), normal(B, T, H, D), log_o, s


def test_a_committed_table_exists_for_cpu():
    assert "cpu.json" in [p.name for p in TABLES]


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_every_entry_names_a_winning_backend_that_supports_its_class(path):
    data = json.loads(path.read_text())
    platform = data["platform"]
    assert path.name == f"{platform}.json" and data["entries"]
    for entry in data["entries"]:
        assert entry["backend"] in dispatch.MEASURABLE, entry
        key = dispatch.ProblemClass(
            **{k: entry[k] for k in ("structure", "read", "dtype", "K", "D", "T")}
        )
        problem = eos.problem(*_inputs(entry["structure"], entry["read"], entry["K"], entry["D"]))
        assert dispatch.ProblemClass.of(problem).without_t() == key.without_t()
        # The named backend accepts the class (resolve_backend raises otherwise).
        assert eos.resolve_backend(entry["backend"], problem, platform) == entry["backend"]
        label = entry["backend"] + (
            "" if entry["chunk_size"] is None else f"@{entry['chunk_size']}"
        )
        assert entry["fwd_bwd_ms"][label] == min(entry["fwd_bwd_ms"].values()), entry


def _fake_table(monkeypatch, **by_t):
    """A table with one class (d decay, K=1, D=64) measured at the given T -> backend."""
    entries = {}
    for t, (backend, chunk) in by_t.items():
        key = dispatch.ProblemClass("d", "vector", "float32", 1, 64, int(t[1:]))
        entries[key] = {
            "backend": backend,
            "chunk_size": chunk,
            "T": key.T,
            "fwd_bwd_ms": {backend: 1.0},
        }
    monkeypatch.setattr(dispatch, "table", lambda platform: entries)


def test_a_measured_class_gets_its_winner_and_chunk_size(monkeypatch):
    _fake_table(monkeypatch, t16=("associative", None), t1024=("chunked", 32))
    problem = eos.problem(*_inputs(T=16))
    assert eos.resolve_backend("auto", problem, "cpu") == "associative"
    assert "table (this class)" in eos.explain(*_inputs(T=16), platform="cpu")
    choice = dispatch.choose(eos.problem(*_inputs(T=1024)), "cpu")
    assert (choice.backend, choice.chunk_size) == ("chunked", 32)
    # And the result is the recurrence's, whatever the table picked.
    y, m = eos.eos_scan(*_inputs(T=16), backend="auto")
    y_ref, m_ref = eos.eos_scan(*_inputs(T=16), backend="reference")
    chex.assert_trees_all_close((y, m), (y_ref, m_ref), atol=1e-5, rtol=1e-5)


def test_an_unmeasured_length_takes_the_nearest_measured_one(monkeypatch):
    _fake_table(monkeypatch, t1024=("reference", None), t16384=("chunked", 64))
    assert dispatch.choose(eos.problem(*_inputs(T=2048)), "cpu").backend == "reference"
    assert dispatch.choose(eos.problem(*_inputs(T=8192)), "cpu").backend == "chunked"
    assert "nearest measured T=1024" in eos.explain(*_inputs(T=2048), platform="cpu")


def test_an_unmeasured_class_falls_back_to_the_rules(monkeypatch):
    _fake_table(monkeypatch, t1024=("associative", None))
    k_wise = eos.problem(*_inputs("k", K=64, T=64))
    assert eos.resolve_backend("auto", k_wise, "cpu") == "chunked"
    full = eos.problem(*_inputs("full", K=4, T=64))
    assert eos.resolve_backend("auto", full, "cpu") == "recurrent"
    assert eos.resolve_backend("auto", full, "gpu") == "associative"
    assert "rule:" in eos.explain(*_inputs("full", K=4, T=64), platform="gpu")


def test_a_short_unmeasured_sequence_runs_sequentially(monkeypatch):
    """At most one chunk to parallelise: the reference scan, unless this T was measured."""
    _fake_table(monkeypatch, t1024=("associative", None))
    for platform in ("cpu", "gpu", "tpu"):
        short = eos.problem(*_inputs("k", K=64, T=dispatch.SHORT_T))
        assert eos.resolve_backend("auto", short, platform) == "reference"
    assert "rule: T <= 16 runs sequentially" in eos.explain(*_inputs(T=5), platform="cpu")
    longer = eos.problem(*_inputs("k", K=64, T=dispatch.SHORT_T + 1))
    assert eos.resolve_backend("auto", longer, "cpu") == "chunked"
    _fake_table(monkeypatch, t1024=("associative", None), t16=("chunked", 8))
    assert dispatch.choose(eos.problem(*_inputs(T=16)), "cpu").backend == "chunked"


def test_no_table_means_the_rules(monkeypatch):
    monkeypatch.setattr(dispatch, "table", lambda platform: {})
    assert eos.resolve_backend("auto", eos.problem(*_inputs(T=64)), "tpu") == "chunked"
