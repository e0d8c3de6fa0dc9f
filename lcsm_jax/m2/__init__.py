"""Monarch Mixer (M2, Fu et al., arXiv 2310.12109): Monarch matrices, structured dense layers, the
long-convolution sequence mixer and its recurrent (EOS) form."""

from lcsm_jax.m2.config import M2Config
from lcsm_jax.m2.dense import BlockDiagDense, MonarchDense, make_linear
from lcsm_jax.m2.mixer import M2Mixer

__all__ = ["BlockDiagDense", "M2Config", "M2Mixer", "MonarchDense", "make_linear"]
