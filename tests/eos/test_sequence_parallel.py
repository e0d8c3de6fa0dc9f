"""Sequence parallelism: `eos_scan` / `delta_scan` with T split over a mesh axis inside
`jax.shard_map` on 8 fake CPU devices (and a 2×4 data×seq mesh) equal the unsplit call and the
float64 oracle: outputs, the global final state and gradients of every input, for every decay
structure and backend, with an initial state and segments that start on a cut and span cuts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcsm_jax import eos

from . import cases, oracle
from .test_delta import oracle as delta_oracle

DEVICES = 8
BLOCK = 5  # tokens per device: the chunked backend (C = 4) pads inside every block
T = DEVICES * BLOCK
RTOL = 1e-5
STRUCTURES = (
    "none", "scalar_di", "scalar", "kwise", "dwise", "separable", "product", "full", "complex"
)  # fmt: skip
BACKENDS = ("reference", "associative", "chunked", "auto")

pytestmark = pytest.mark.skipif(
    len(jax.devices()) < DEVICES, reason=f"needs {DEVICES} devices (XLA_FLAGS in conftest)"
)


def _mesh(shape=(DEVICES,), names=("seq",)):
    n = int(np.prod(shape))
    return Mesh(np.array(jax.devices()[:n]).reshape(shape), names)


def _ids(b):
    """Segments: one starts inside block 0, one exactly on the cut at t = 10, and the segment
    from t = 10 to 21 spans the cuts at 15 and 20; row 1 restarts elsewhere."""
    starts = np.zeros((b, T), bool)
    starts[0, [3, 10, 22]] = True
    if b > 1:
        starts[1, [5, 17, 30]] = True
    return (2 + np.cumsum(starts, axis=1)).astype(np.int32)


def _case(structure):
    c = cases.make_case(structure, T, init=True, seed=3)
    ids = _ids(c.e.shape[0])
    return cases.Case(c.e, c.i, c.log_o, c.s, c.initial_state, ids, c.log_o_dense)


def _spec(x, seq, data=None):
    """Time-varying inputs split over `seq` (and B over `data`); broadcast dims replicated."""
    if x is None or isinstance(x, int):
        return None
    if isinstance(x, eos.Decay):
        return eos.Decay(k=_spec(x.k, seq, data), d=_spec(x.d, seq, data))
    if isinstance(x, eos.ProductDecay):  # its parameter p [H,K,D] is replicated
        k, d = _spec(x.k, seq, data), _spec(x.d, seq, data)
        return eos.ProductDecay(k=k, d=d, p=P(), fn=x.fn, scale=x.scale)
    x = np.asarray(x)
    b = data if x.shape[0] > 1 else None
    return P(b, seq if x.shape[1] > 1 else None)


def _split_scan(case, backend, mesh, seq="seq", data=None):
    """f(e, i, log_o, s, m0) -> (y, final) computed with T split over `seq` under shard_map."""
    zero = isinstance(case.log_o, int)
    e, i, lo, s, m0, ids = cases.case_args(case)
    specs = (_spec(e, seq, data), _spec(i, seq, data), _spec(lo, seq, data), _spec(s, seq, data))
    state_spec = P(data)
    ids_spec = P(data, seq)

    def body(e, i, lo, s, m0, ids):
        return eos.eos_scan(
            e, i, 0 if zero else lo, s, initial_state=m0, segment_ids=ids, backend=backend,
            chunk_size=cases.C, sequence_axis=seq,
        )  # fmt: skip

    mapped = jax.shard_map(
        body, mesh=mesh, in_specs=(*specs, state_spec, ids_spec), out_specs=(P(data, seq), P(data))
    )

    def put(x, spec):
        if x is None:
            return None
        if isinstance(x, eos.Decay):
            return eos.Decay(k=put(x.k, spec.k), d=put(x.d, spec.d))
        if isinstance(x, eos.ProductDecay):
            k, d, p = put(x.k, spec.k), put(x.d, spec.d), put(x.p, spec.p)
            return eos.ProductDecay(k=k, d=d, p=p, fn=x.fn, scale=x.scale)
        return jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))

    placed = [put(x, sp) for x, sp in zip((e, i, lo, s), specs, strict=True)]
    placed += [put(m0, state_spec), put(ids, ids_spec)]
    return mapped, placed


def _loss(fn, ids, weights):
    def loss(e, i, lo, s, m0):
        y, m = fn(e, i, lo, s, m0, ids)
        wy, wm = weights
        return jnp.sum(jnp.real(y * wy)) + jnp.sum(jnp.real(m * wm))

    return loss


def _weights(case):
    rng = np.random.default_rng(7)
    y_shape, m_shape = case.e.shape[:3] + case.i.shape[-1:], case.initial_state.shape
    return rng.normal(size=y_shape).astype(np.float32), rng.normal(size=m_shape).astype(np.float32)


@pytest.mark.parametrize(
    "backend",
    ["reference", "chunked", "recurrent"]
    + [pytest.param(b, marks=pytest.mark.slow) for b in ("associative", "auto")],
)
def test_split_equals_unsplit_and_oracle(backend):
    """Every structure (the chunked backend: the ones it takes), outputs and final state."""
    mesh = _mesh()
    structures = [s for s in STRUCTURES if backend != "chunked" or s in cases.CHUNKED_STRUCTURES]
    for structure in structures:
        case = _case(structure)
        mapped, placed = _split_scan(case, backend, mesh)
        y, m = jax.jit(mapped)(*placed)
        y_ref, m_ref = case.oracle()
        what = f"{backend}/{structure}"
        cases.assert_close(y, y_ref, rtol=RTOL, what=what + " y vs oracle")
        cases.assert_close(m, m_ref, rtol=RTOL, what=what + " final vs oracle")
        y1, m1 = cases.run_case(case, backend)
        cases.assert_close(y, np.asarray(y1), rtol=RTOL, what=what + " y vs unsplit")
        cases.assert_close(m, np.asarray(m1), rtol=RTOL, what=what + " final vs unsplit")


GRAD_CELLS = [("reference", "full"), ("chunked", "kwise"), ("chunked", "complex")]
GRAD_CELLS += [("recurrent", "product")]  # what auto runs for Mamba's decay on CPU
GRAD_CELLS += [
    pytest.param(b, s, marks=pytest.mark.slow)
    for b, s in (
        ("reference", "scalar"),
        ("reference", "complex"),
        ("chunked", "separable"),
        ("associative", "kwise"),
        ("chunked", "scalar"),
        ("reference", "kwise"),
    )
]


@pytest.mark.parametrize(("backend", "structure"), GRAD_CELLS)
def test_split_gradients_equal_unsplit(backend, structure):
    """Gradients of e, i, log_o, s and the initial state cross the devices exactly."""
    mesh = _mesh()
    case = _case(structure)
    mapped, placed = _split_scan(case, backend, mesh)
    weights = _weights(case)
    argnums = (0, 1, 2, 3, 4)
    got = jax.jit(jax.grad(_loss(mapped, placed[5], weights), argnums))(*placed[:5])
    unsplit = cases.scan_fn(case.log_o, backend="reference")
    e, i, lo, s, m0, ids = cases.case_args(case)
    want = jax.grad(_loss(unsplit, ids, weights), argnums)(e, i, lo, s, m0)
    cases.assert_trees_close(got, want, rtol=RTOL, what=f"{backend}/{structure} grad")
    if structure != "complex":  # and against the float64 backward pass of the equations
        dy, dm = weights
        ref = oracle.eos_vjp(e, i, case.log_o_dense, s, m0, ids, dy, dm)
        cases.assert_close(got[0], ref["de"], rtol=RTOL, what="de vs oracle")
        cases.assert_close(got[4], ref["dm0"], rtol=RTOL, what="dm0 vs oracle")


def test_data_by_seq_mesh():
    """A 2×4 (data, seq) mesh: B split over data, T over seq; values and gradients."""
    mesh = _mesh((2, 4), ("data", "seq"))
    case = _case("kwise")
    mapped, placed = _split_scan(case, "chunked", mesh, seq="seq", data="data")
    y, m = jax.jit(mapped)(*placed)
    y_ref, m_ref = case.oracle()
    cases.assert_close(y, y_ref, rtol=RTOL, what="y")
    cases.assert_close(m, m_ref, rtol=RTOL, what="final")
    weights = _weights(case)
    got = jax.jit(jax.grad(_loss(mapped, placed[5], weights), (0, 2, 4)))(*placed[:5])
    e, i, lo, s, m0, ids = cases.case_args(case)
    want = jax.grad(_loss(cases.scan_fn(lo, backend="reference"), ids, weights), (0, 2, 4))(
        e, i, lo, s, m0
    )
    cases.assert_trees_close(got, want, rtol=RTOL, what="grad")


def test_without_initial_state_or_segments():
    mesh = _mesh()
    c = cases.make_case("scalar", T, seed=4)
    mapped, placed = _split_scan(c, "chunked", mesh)
    y, m = jax.jit(mapped)(*placed)
    y_ref, m_ref = c.oracle()
    cases.assert_close(y, y_ref, rtol=RTOL, what="y")
    cases.assert_close(m, m_ref, rtol=RTOL, what="final")


def test_eos_scan_inside_data_parallel_shard_map():
    """Without sequence_axis, every backend runs inside shard_map over a batch axis (its scan
    carries are typed varying like the inputs), with a replicated initial state."""
    mesh = _mesh((DEVICES,), ("data",))
    c = cases.make_case("kwise", 9, init=True, dims=(DEVICES, 2, 4, 3))
    e, i, lo, s, m0, _ = cases.case_args(c)
    y_ref, m_ref = c.oracle()
    for backend in ("reference", "associative", "chunked"):

        def body(e, i, lo, s, m0, backend=backend):
            return eos.eos_scan(e, i, lo, s, initial_state=m0, backend=backend, chunk_size=4)

        mapped = jax.shard_map(
            body, mesh=mesh, in_specs=(P("data"),) * 5, out_specs=(P("data"), P("data"))
        )
        put = lambda x: jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("data")))  # noqa: E731
        y, m = jax.jit(mapped)(*map(put, (e, i, lo, s, m0)))
        cases.assert_close(y, y_ref, rtol=RTOL, what=f"{backend} y")
        cases.assert_close(m, m_ref, rtol=RTOL, what=f"{backend} final")


def test_unbound_axis_is_a_clear_error():
    c = cases.make_case("scalar", 8)
    e, i, lo, s, _, _ = cases.case_args(c)
    with pytest.raises(ValueError, match="sequence_axis='seq' is not a mesh axis bound here"):
        eos.eos_scan(e, i, lo, s, sequence_axis="seq")


# --- the delta rule ---------------------------------------------------------------------------


def _delta_inputs(gate):
    rng = np.random.default_rng(11)
    b, h, k, v = 2, 2, 4, 3
    kk = rng.normal(size=(b, T, h, k))
    g = {
        "none": None,
        "scalar": -rng.uniform(0, 3, (b, T, h)),
        "key": -rng.uniform(0, 3, (b, T, h, k)),
    }
    f32 = lambda x: None if x is None else np.asarray(x, np.float32)  # noqa: E731
    return dict(
        q=f32(rng.normal(size=(b, T, h, k))),
        k=f32(kk / np.linalg.norm(kk, axis=-1, keepdims=True)),
        v=f32(rng.normal(size=(b, T, h, v))),
        beta=f32(rng.uniform(0.05, 1.95, (b, T, h))),
        g=f32(g[gate]),
        h0=f32(rng.normal(size=(b, h, k, v))),
    )


# The split's combination code is the same for both backends: the default run splits the
# chunked one (what `auto` runs) for every gate and the reference with a per-key gate.
@pytest.mark.parametrize(
    ("gate", "backend"),
    [("none", "chunked"), ("scalar", "chunked"), ("key", "chunked"), ("key", "reference")]
    + [pytest.param(g, "reference", marks=pytest.mark.slow) for g in ("none", "scalar")],
)
def test_delta_split_equals_oracle_with_gradients(gate, backend):
    mesh = _mesh()
    p = _delta_inputs(gate)
    ids = _ids(2)
    names = ("q", "k", "v", "beta", "g")
    present = [n for n in names if p[n] is not None]
    seq = P(None, "seq")

    def body(*args):
        x = dict(zip(present, args[:-2], strict=True))
        return eos.delta_scan(
            x["q"], x["k"], x["v"], x["beta"], x.get("g"), initial_state=args[-2],
            segment_ids=args[-1], backend=backend, chunk_size=4, sequence_axis="seq",
        )  # fmt: skip

    mapped = jax.shard_map(
        body, mesh=mesh, in_specs=(seq,) * len(present) + (P(), seq), out_specs=(seq, P())
    )
    put = lambda x, sp: jax.device_put(jnp.asarray(x), NamedSharding(mesh, sp))  # noqa: E731
    args = [put(p[n], seq) for n in present] + [put(p["h0"], P()), put(ids, seq)]
    o, S = jax.jit(mapped)(*args)
    gate_in = None if p["g"] is None else p["g"].astype(np.float64)
    o_ref, S_ref, _ = delta_oracle(
        np, *(p[n].astype(np.float64) for n in ("q", "k", "v", "beta")), gate_in,
        p["h0"].astype(np.float64), ids,
    )  # fmt: skip
    cases.assert_close(o, o_ref, rtol=RTOL, what="o")
    cases.assert_close(S, S_ref, rtol=RTOL, what="final")

    rng = np.random.default_rng(5)
    wo, wS = rng.normal(size=o.shape), rng.normal(size=S.shape)

    def loss_split(*xs):
        o, S = mapped(*xs, args[-1])
        return jnp.sum(o * wo) + jnp.sum(S * wS)

    def loss_unsplit(*xs):
        x = dict(zip(present, xs[:-1], strict=True))
        o, S = eos.delta_scan(
            x["q"], x["k"], x["v"], x["beta"], x.get("g"), initial_state=xs[-1],
            segment_ids=ids, backend="reference",
        )  # fmt: skip
        return jnp.sum(o * wo) + jnp.sum(S * wS)

    argnums = tuple(range(len(present) + 1))
    got = jax.jit(jax.grad(loss_split, argnums))(*args[:-1])
    want = jax.grad(loss_unsplit, argnums)(*(jnp.asarray(p[n]) for n in present), p["h0"])
    cases.assert_trees_close(got, want, rtol=RTOL, what=f"delta {gate}/{backend} grad")


def test_delta_per_segment_states_are_refused():
    mesh = _mesh()
    p = _delta_inputs("none")
    seq = P(None, "seq")

    def body(q, k, v, beta):
        return eos.delta_scan(
            q, k, v, beta, segment_ids=jnp.zeros(q.shape[:2], jnp.int32), num_segments=1,
            sequence_axis="seq",
        )  # fmt: skip

    mapped = jax.shard_map(body, mesh=mesh, in_specs=(seq,) * 4, out_specs=(seq, P()))
    b1 = {n: jax.device_put(jnp.asarray(p[n][:1]), NamedSharding(mesh, seq)) for n in "qkv"}
    beta = jax.device_put(jnp.asarray(p["beta"][:1]), NamedSharding(mesh, seq))
    with pytest.raises(ValueError, match="sequence_axis does not support segment_initial_states"):
        mapped(b1["q"], b1["k"], b1["v"], beta)


def test_auto_avoids_pallas_inside_shard_map(monkeypatch):
    """A measured table that picks pallas is not followed inside shard_map (the kernels'
    outputs carry no mesh-axis types); outside it, it is."""
    from lcsm_jax.eos import dispatch

    c = cases.make_case("kwise", 8, dims=(DEVICES, 2, 4, 3))
    e, i, lo, s, _, _ = cases.case_args(c)
    problem = eos.problem(e, i, lo, s)
    key = dispatch.ProblemClass.of(problem)
    entry = {"backend": "pallas", "chunk_size": 16, "T": key.T, "fwd_bwd_ms": {"pallas": 1.0}}
    monkeypatch.setattr(dispatch, "table", lambda platform: {key: entry})
    assert dispatch.choose(problem, "gpu").backend == "pallas"
    mesh = _mesh((DEVICES,), ("data",))
    chosen = []

    def body(e, i, lo, s):
        chosen.append(dispatch.choose(eos.problem(e, i, lo, s), "gpu"))
        return e

    mapped = jax.shard_map(body, mesh=mesh, in_specs=(P("data"),) * 4, out_specs=P("data"))
    put = lambda x: jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("data")))  # noqa: E731
    jax.jit(mapped)(*map(put, (e, i, lo, s)))
    assert chosen[0].backend == "chunked", chosen[0]
    assert "shard_map" in chosen[0].reason
