"""Bad inputs raise ValueError (shapes, values) or TypeError (dtypes) naming the argument."""

import numpy as np
import pytest

from lcsm_jax import eos

B, T, H, K, D = 2, 5, 2, 4, 3
_rng = np.random.default_rng(0)


def _f32(*shape):
    return _rng.normal(size=shape).astype(np.float32)


GOOD = {
    "e": _f32(B, T, H, K),
    "i": _f32(B, T, H, D),
    "log_o": -np.abs(_f32(B, T, H, K, 1)),
    "s": _f32(B, T, H, K),
    "initial_state": _f32(B, H, K, D),
    "segment_ids": np.zeros((B, T), np.int32),
    "backend": "reference",
}
DECAY = eos.Decay(k=-np.abs(_f32(B, T, H, K)), d=-np.abs(_f32(B, T, H, D)))
E_, I_, S_ = r"\be\b", r"\bi\b", r"\bs\b"
SEG = "segment_ids"
# An unsupported structure may be blamed on the backend or on the argument that carries it.
CHUNKED_LOG_O, CHUNKED_S = r"log_o|backend|chunked", r"\bs\b|backend|chunked"

# (id, overrides of GOOD, error type, regex the message must match)
SCAN_CASES = [
    ("e_rank3", {"e": _f32(B, T, H)}, ValueError, E_),
    ("e_rank5", {"e": _f32(B, T, H, K, 1)}, ValueError, E_),
    ("i_rank3", {"i": _f32(B, T, H)}, ValueError, I_),
    ("i_batch_mismatch", {"i": _f32(B + 1, T, H, D)}, ValueError, r"\b[ei]\b"),
    ("i_time_mismatch", {"i": _f32(B, T + 1, H, D)}, ValueError, r"\b[ei]\b"),
    ("i_heads_mismatch", {"i": _f32(B, T, H + 1, D)}, ValueError, r"\b[ei]\b"),
    ("s_rank3", {"s": _f32(B, T, H)}, ValueError, S_),
    ("s_rank6", {"s": _f32(1, B, T, H, K, D)}, ValueError, S_),
    ("s_wrong_k", {"s": _f32(B, T, H, K + 1)}, ValueError, S_),
    ("s_wrong_time", {"s": _f32(B, T - 1, H, K)}, ValueError, S_),
    ("s_elementwise_wrong_d", {"s": _f32(B, T, H, K, D + 1)}, ValueError, S_),
    ("s_elementwise_wrong_k", {"s": _f32(1, 1, H, K + 1, D)}, ValueError, S_),
    ("log_o_wrong_k", {"log_o": _f32(B, T, H, K + 1, 1)}, ValueError, "log_o"),
    ("log_o_wrong_d", {"log_o": _f32(B, T, H, 1, D + 1)}, ValueError, "log_o"),
    ("log_o_wrong_heads", {"log_o": _f32(1, 1, H + 1, 1, 1)}, ValueError, "log_o"),
    ("log_o_wrong_time", {"log_o": _f32(B, T + 1, H, K, 1)}, ValueError, "log_o"),
    ("log_o_rank6", {"log_o": _f32(1, B, T, H, K, D)}, ValueError, "log_o"),
    ("decay_k_wrong_k", {"log_o": eos.Decay(k=_f32(B, T, H, K + 1))}, ValueError, "log_o"),
    ("decay_d_wrong_d", {"log_o": eos.Decay(d=_f32(B, T, H, D + 1))}, ValueError, "log_o"),
    ("decay_k_rank5", {"log_o": eos.Decay(k=_f32(B, T, H, K, 1))}, ValueError, "log_o"),
    ("decay_d_wrong_batch", {"log_o": eos.Decay(d=_f32(B + 1, T, H, D))}, ValueError, "log_o"),
    ("e_int", {"e": np.ones((B, T, H, K), np.int32)}, TypeError, E_),
    ("i_int", {"i": np.ones((B, T, H, D), np.int32)}, TypeError, I_),
    ("s_int", {"s": np.ones((B, T, H, K), np.int32)}, TypeError, S_),
    ("log_o_int", {"log_o": np.zeros((B, T, H, K, 1), np.int32)}, TypeError, "log_o"),
    ("decay_k_int", {"log_o": eos.Decay(k=np.zeros((B, T, H, K), np.int32))}, TypeError, "log_o"),
    ("i_other_float", {"i": GOOD["i"].astype(np.float16)}, TypeError, I_),
    ("s_other_float", {"s": GOOD["s"].astype(np.float16)}, TypeError, S_),
    ("e_complex_i_real", {"e": GOOD["e"].astype(np.complex64)}, TypeError, r"\b[eis]\b"),
    (
        "complex_log_o_real_inputs",
        {"log_o": GOOD["log_o"].astype(np.complex64)},
        (TypeError, ValueError),
        "log_o",
    ),
    ("initial_state_wrong_d", {"initial_state": _f32(B, H, K, D + 1)}, ValueError, "initial_state"),
    ("initial_state_wrong_batch", {"initial_state": _f32(1, H, K, D)}, ValueError, "initial_state"),
    ("initial_state_rank5", {"initial_state": _f32(B, 1, H, K, D)}, ValueError, "initial_state"),
    (
        "initial_state_int",
        {"initial_state": np.zeros((B, H, K, D), np.int32)},
        TypeError,
        "initial_state",
    ),
    ("segment_ids_float", {"segment_ids": np.zeros((B, T), np.float32)}, TypeError, SEG),
    ("segment_ids_rank1", {"segment_ids": np.zeros((B,), np.int32)}, ValueError, SEG),
    (
        "segment_ids_long",
        {"segment_ids": np.zeros((B, T + 1), np.int32)},
        ValueError,
        "segment_ids",
    ),
    ("segment_ids_batch", {"segment_ids": np.zeros((1, T), np.int32)}, ValueError, SEG),
    (
        "segment_ids_rank3",
        {"segment_ids": np.zeros((B, T, H), np.int32)},
        ValueError,
        "segment_ids",
    ),
    ("unknown_backend", {"backend": "bogus"}, ValueError, "backend"),
    ("chunk_size_zero", {"backend": "chunked", "chunk_size": 0}, ValueError, "chunk_size"),
    ("chunk_size_negative", {"chunk_size": -4}, ValueError, "chunk_size"),
    ("chunk_size_float", {"chunk_size": 2.5}, (TypeError, ValueError), "chunk_size"),
    (
        "chunked_full_log_o",
        {"backend": "chunked", "log_o": _f32(B, T, H, K, D)},
        ValueError,
        CHUNKED_LOG_O,
    ),
    (
        "chunked_full_di_log_o",
        {"backend": "chunked", "log_o": _f32(H, K, D)},
        ValueError,
        CHUNKED_LOG_O,
    ),
    (
        "chunked_elementwise_s",
        {"backend": "chunked", "s": _f32(B, T, H, K, D)},
        ValueError,
        CHUNKED_S,
    ),
    (
        "chunked_elementwise_s_di",
        {"backend": "chunked", "s": _f32(1, 1, H, K, D)},
        ValueError,
        CHUNKED_S,
    ),
]


def _scan(**overrides):
    kw = {**GOOD, **overrides}
    return eos.eos_scan(kw.pop("e"), kw.pop("i"), kw.pop("log_o"), kw.pop("s"), **kw)


def test_good_inputs_run():
    """The baseline the cases below break is itself valid (every backend is in test_scan)."""
    for log_o in (GOOD["log_o"], DECAY, 0):
        _scan(log_o=log_o)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [pytest.param(o, err, m, id=name) for name, o, err, m in SCAN_CASES],
)
def test_scan_rejects(overrides, error, match):
    with pytest.raises(error, match=match):
        _scan(**overrides)


@pytest.mark.parametrize("backend", ("reference", "associative", "chunked", "auto"))
def test_every_backend_validates(backend):
    """Validation does not depend on the backend."""
    with pytest.raises(ValueError, match="segment_ids"):
        _scan(backend=backend, segment_ids=np.zeros((B, T + 1), np.int32))
    with pytest.raises(TypeError, match=E_):
        _scan(backend=backend, e=np.ones((B, T, H, K), np.int32))


STEP_GOOD = {
    "e_t": _f32(B, H, K),
    "i_t": _f32(B, H, D),
    "log_o_t": -np.abs(_f32(B, H, K, 1)),
    "s_t": _f32(B, H, K),
    "state": _f32(B, H, K, D),
}
STEP_CASES = [
    ("e_t_rank4", {"e_t": _f32(B, 1, H, K)}, ValueError, r"\be_t\b"),
    ("i_t_wrong_heads", {"i_t": _f32(B, H + 1, D)}, ValueError, r"\b[ei]_t\b"),
    ("s_t_wrong_k", {"s_t": _f32(B, H, K + 1)}, ValueError, r"\bs_t\b"),
    ("s_t_rank5", {"s_t": _f32(B, 1, H, K, D)}, ValueError, r"\bs_t\b"),
    ("log_o_t_wrong_k", {"log_o_t": _f32(B, H, K + 1, 1)}, ValueError, "log_o"),
    ("log_o_t_rank5", {"log_o_t": _f32(B, 1, H, K, D)}, ValueError, "log_o"),
    ("decay_t_wrong_d", {"log_o_t": eos.Decay(d=_f32(B, H, D + 1))}, ValueError, "log_o"),
    ("state_wrong_shape", {"state": _f32(B, H, K, D + 1)}, ValueError, "state"),
    ("i_t_int", {"i_t": np.ones((B, H, D), np.int32)}, TypeError, r"\bi_t\b"),
    ("s_t_other_float", {"s_t": STEP_GOOD["s_t"].astype(np.float16)}, TypeError, r"\bs_t\b"),
]


def _step(**overrides):
    kw = {**STEP_GOOD, **overrides}
    return eos.eos_step(kw["e_t"], kw["i_t"], kw["log_o_t"], kw["s_t"], kw["state"])


def test_good_step_runs():
    _step()


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [pytest.param(o, err, m, id=name) for name, o, err, m in STEP_CASES],
)
def test_step_rejects(overrides, error, match):
    with pytest.raises(error, match=match):
        _step(**overrides)
