"""Random EOS problems for every decay structure, and an oracle-relative closeness check.

A `Case` holds the user-facing inputs of `eos.eos_scan` (NumPy arrays, `log_o` as Python 0, an
array or an `eos.Decay`) and `log_o_dense`, the same log-oscillation as one broadcastable array
for the float64 oracle. Inputs are drawn in float32 (complex64), so backends and oracle see the
very same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax import eos

from . import oracle

B, H, K, D = 2, 2, 4, 3
C = 4  # chunk size for the chunked backend
TS = (1, 2, C - 1, C, C + 1, 3 * C + 5)
# The recurrent backend's forward is the reference's scan; its own code is its gradient, which
# test_grad checks (every structure) against the reference and SPEC §1's float64 backward.
BACKENDS = ("reference", "associative", "chunked", "auto")

# none: Python 0; scalar_di: one fixed decay per head; product: a ProductDecay (o_type 6-9
# style, log σ(k[r] d[c] p[r,c]) / 2 with a parameter p); the rest data-dependent.
STRUCTURES = (
    "none", "scalar_di", "scalar", "kwise", "dwise", "separable", "product", "full", "complex"
)  # fmt: skip
# The chunked backend takes the separable structures with a vector read only.
CHUNKED_STRUCTURES = frozenset(STRUCTURES) - {"full", "product"}
PRODUCT_SCALE = 0.5


@dataclasses.dataclass(frozen=True)
class Case:
    e: np.ndarray
    i: np.ndarray
    log_o: Any
    s: np.ndarray
    initial_state: np.ndarray | None
    segment_ids: np.ndarray | None
    log_o_dense: Any

    @property
    def shape(self):
        return (*self.e.shape, self.i.shape[-1])

    def oracle(self):
        return oracle.eos(
            self.e, self.i, self.log_o_dense, self.s, self.initial_state, self.segment_ids
        )


def chunked_supports(structure: str, elementwise: bool) -> bool:
    return structure in CHUNKED_STRUCTURES and not elementwise


def log_decay(rng, shape) -> np.ndarray:
    """-softplus(2 z): from about -1e-4 (long memory) down to about -8 (forgets in a step)."""
    return -np.logaddexp(0.0, 2.0 * rng.normal(size=shape)).astype(np.float32)


def _normal(rng, shape, complex_: bool) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    if complex_:
        x = (x + 1j * rng.normal(size=shape).astype(np.float32)).astype(np.complex64)
    return x


def segment_ids(rng, b: int, t: int) -> np.ndarray:
    """Increasing int32 ids with random restarts, always one at t=1 of the first row."""
    starts = rng.random((b, t)) < 0.3
    starts[:, 0] = False
    if t > 1:
        starts[0, 1] = True
    return (7 + np.cumsum(starts, axis=1)).astype(np.int32)


def make_case(
    structure: str,
    T: int,
    *,
    init: bool = False,
    seg: bool = False,
    elementwise: bool = False,
    seed: int = 0,
    dims: tuple[int, int, int, int] = (B, H, K, D),
) -> Case:
    b, h, k, d = dims
    key = [seed, T, STRUCTURES.index(structure), int(init), int(seg), int(elementwise)]
    rng = np.random.default_rng(key)
    cplx = structure == "complex"
    e = _normal(rng, (b, T, h, k), cplx)
    i = _normal(rng, (b, T, h, d), cplx)
    s_shape = (b, T, h, k, d) if elementwise else (b, T, h, k)
    s = _normal(rng, s_shape, cplx)
    m0 = _normal(rng, (b, h, k, d), cplx) if init else None
    ids = segment_ids(rng, b, T) if seg else None

    shape5 = (b, T, h, k, d)
    if structure == "none":
        log_o, dense = 0, None
    elif structure == "separable":
        lk, ld = log_decay(rng, (b, T, h, k)), log_decay(rng, (b, T, h, d))
        log_o, dense = eos.Decay(k=lk, d=ld), oracle.separable(lk, ld, shape5)
    elif structure == "product":
        pk, pd = _normal(rng, (b, T, h, k), False), _normal(rng, (b, T, h, d), False)
        pp = 2 * _normal(rng, (h, k, d), False)
        log_o = eos.ProductDecay(k=pk, d=pd, p=pp, fn="log_sigmoid", scale=PRODUCT_SCALE)
        dense = PRODUCT_SCALE * oracle.log_sigmoid(oracle.product_argument(pk, pd, pp))
    else:
        log_o = {
            "scalar_di": lambda: log_decay(rng, (1, 1, h, 1, 1)),
            "scalar": lambda: log_decay(rng, (b, T, h, 1, 1)),
            "kwise": lambda: log_decay(rng, (b, T, h, k, 1)),
            "dwise": lambda: log_decay(rng, (b, T, h, 1, d)),
            "full": lambda: log_decay(rng, shape5),
            "complex": lambda: (
                log_decay(rng, (b, T, h, k, 1))
                + 1j * rng.uniform(-np.pi, np.pi, (b, T, h, k, 1)).astype(np.float32)
            ).astype(np.complex64),
        }[structure]()
        dense = log_o
    return Case(e, i, log_o, s, m0, ids, dense)


def case_args(case: Case) -> tuple:
    """(e, i, log_o, s, initial_state, segment_ids) with a Python-0 log_o as None."""
    log_o = None if isinstance(case.log_o, int) else case.log_o
    return case.e, case.i, log_o, case.s, case.initial_state, case.segment_ids


def scan_fn(log_o, **kwargs):
    """`eos_scan` as f(e, i, log_o, s, initial_state, segment_ids).

    A Python-0 `log_o` is closed over and the argument ignored: tracing 0 would make it an int32
    array, which is (rightly) rejected.
    """
    zero = isinstance(log_o, int)

    def f(e, i, lo, s, m0, ids):
        lo = 0 if zero else lo
        return eos.eos_scan(e, i, lo, s, initial_state=m0, segment_ids=ids, **kwargs)

    return f


def run_cases(cases, backend: str, *, wrap=jax.jit, chunk_size: int | None = C):
    """[(y, final_state)] for every case, all under one `wrap` (one compilation when jitted).

    Tracing many small problems into one program compiles about 5x faster than one by one.
    """
    fns = [scan_fn(c.log_o, backend=backend, chunk_size=chunk_size) for c in cases]

    def run_all(args):
        return [fn(*a) for fn, a in zip(fns, args, strict=True)]

    return wrap(run_all)([case_args(c) for c in cases])


def run_case(case: Case, backend: str, **kwargs):
    return run_cases([case], backend, **kwargs)[0]


def assert_close(actual, expected, *, rtol: float, atol: float = 1e-6, what: str = ""):
    """max|actual - expected| <= rtol * max|expected| + atol, and actual is finite."""
    a = np.asarray(jnp.asarray(actual, jnp.complex64 if np.iscomplexobj(actual) else jnp.float32))
    expected = np.asarray(expected)
    assert a.shape == expected.shape, f"{what}: shape {a.shape} != {expected.shape}"
    assert np.all(np.isfinite(a)), f"{what}: non-finite values"
    err = float(np.max(np.abs(a - expected))) if a.size else 0.0
    scale = float(np.max(np.abs(expected))) if a.size else 0.0
    assert err <= rtol * scale + atol, (
        f"{what}: max|err| = {err:.3g} > rtol {rtol:g} * max|ref| {scale:.3g} + atol {atol:g}"
        f" (relative {err / max(scale, 1e-30):.3g})"
    )


def assert_trees_close(actual, expected, *, rtol: float, atol: float = 1e-6, what: str = ""):
    """`assert_close` leaf by leaf, each leaf judged against its own scale."""
    paths_a, tree_a = jax.tree_util.tree_flatten_with_path(actual)
    leaves_e, tree_e = jax.tree_util.tree_flatten(expected)
    assert tree_a == tree_e, f"{what}: tree structures differ: {tree_a} vs {tree_e}"
    for (path, a), x in zip(paths_a, leaves_e, strict=True):
        name = f"{what}{jax.tree_util.keystr(path)}"
        assert_close(a, np.asarray(x), rtol=rtol, atol=atol, what=name)
