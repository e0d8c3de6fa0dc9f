"""lcsm_jax: linear-complexity sequence models as one Expand-Oscillation-Shrink recurrence."""

__version__ = "0.1.0"
