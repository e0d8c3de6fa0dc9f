"""Monarch Mixer (M2, Fu et al., arXiv 2310.12109): the long-convolution sequence mixer and its
recurrent (EOS) form. Its structured matrices (Monarch, block-diagonal) live in `lcsm_jax.nn`."""

from lcsm_jax.m2.config import M2Config
from lcsm_jax.m2.mixer import M2Mixer

__all__ = ["M2Config", "M2Mixer"]
