"""The EOS functional core: `m_t = o_t ⊙ m_{t-1} + e_t i_tᵀ`, `y_t = m_tᵀ s_t`, in pure JAX.

Public API: `eos_scan`, `eos_step`, `Decay`, `ProductDecay` (a factored K×D decay, built step by
step), `segment_resets`, `resolve_backend`, `explain`
(what `auto` picks and why), `BACKENDS`; the delta rule, whose oscillation is a gated Householder
transition: `delta_scan`, `delta_step`, `DELTA_BACKENDS`;
`sequence_parallel` (a context: every scan traced in it splits T over a mesh axis);
`problem` builds the validated `Problem` that `resolve_backend` and the backends take.
"""

from lcsm_jax.eos.api import BACKENDS, eos_scan, eos_step, explain, resolve_backend
from lcsm_jax.eos.delta_api import DELTA_BACKENDS, delta_scan, delta_step
from lcsm_jax.eos.inputs import STRUCTURES, Decay, Problem, problem, segment_resets
from lcsm_jax.eos.product import ProductDecay
from lcsm_jax.eos.sequence import sequence_parallel

__all__ = [
    "BACKENDS",
    "DELTA_BACKENDS",
    "STRUCTURES",
    "Decay",
    "Problem",
    "ProductDecay",
    "delta_scan",
    "delta_step",
    "eos_scan",
    "eos_step",
    "explain",
    "problem",
    "resolve_backend",
    "segment_resets",
    "sequence_parallel",
]
