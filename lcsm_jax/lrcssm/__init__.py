"""LrcSSM (Farsang et al., arXiv 2505.21717): the LRC cell, its parallel Newton solve on the EOS
scan, and the cell as a sequence mixer (`LrcMixer`, catalogue entry "lrcssm"); the paper's
classifier is `lcsm_jax.models.classifier.SequenceClassifier` around it."""

from lcsm_jax.lrcssm.cell import InputLrcParams, LrcParams, init_input_params, init_params, rollout
from lcsm_jax.lrcssm.mixer import LrcConfig, LrcMixer
from lcsm_jax.lrcssm.solver import (
    NotConvergedError,
    SolveInfo,
    SolverConfig,
    check,
    solve,
    solve_input_only,
)

__all__ = [
    "InputLrcParams",
    "LrcConfig",
    "LrcMixer",
    "LrcParams",
    "NotConvergedError",
    "SolveInfo",
    "SolverConfig",
    "check",
    "init_input_params",
    "init_params",
    "rollout",
    "solve",
    "solve_input_only",
]
