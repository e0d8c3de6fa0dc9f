"""`Problem` is a pytree with static metadata; `segment_resets` turns segment ids into restarts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import eos

from .cases import case_args, make_case


def test_problem_is_a_pytree_of_its_arrays():
    case = make_case("kwise", 3, init=True, seg=True)
    p = eos.problem(*case_args(case))
    leaves = jax.tree.leaves(p)
    assert len(leaves) == 6  # e, i, s, lk, reset, m0 (ld and lo are None)
    assert all(isinstance(x, jax.Array) for x in leaves)
    assert (p.structure, p.out_dtype) == ("k", np.float32)


def test_problem_passes_through_jit_with_its_metadata():
    case = make_case("separable", 3)
    p = eos.problem(*case_args(case)[:4])
    seen = []

    def f(q):
        seen.append((q.structure, q.out_dtype))  # static: plain Python values while tracing
        return q

    out = jax.jit(f)(p)
    assert seen == [("separable", np.float32)]
    assert (out.structure, out.out_dtype) == ("separable", np.float32)
    jax.tree.map(np.testing.assert_array_equal, out, p)
    other = eos.problem(*case_args(make_case("scalar", 3))[:4])
    assert jax.tree.structure(other) != jax.tree.structure(p)


def test_segment_resets():
    ids = np.array([[7, 7, 8, 8, 9], [1, 2, 2, 2, 2]], np.int32)
    want = [[False, False, True, False, True], [False, True, False, False, False]]
    np.testing.assert_array_equal(eos.segment_resets(ids, 2, 5), want)
    assert eos.segment_resets(jnp.asarray(ids), 2, 5).dtype == jnp.bool_
    assert eos.segment_resets(None, 2, 5) is None
    np.testing.assert_array_equal(eos.segment_resets(ids[:, :1], 2, 1), [[False], [False]])


def test_segment_resets_rejects():
    with pytest.raises(ValueError, match=r"segment_ids must be \[B,T\]"):
        eos.segment_resets(np.zeros((2, 4), np.int32), 2, 5)
    with pytest.raises(TypeError, match="segment_ids must be an integer array"):
        eos.segment_resets(np.zeros((2, 5), np.float32), 2, 5)
