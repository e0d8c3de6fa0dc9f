"""Name -> oscillation stage class, for every construction a `LayerSpec` may name."""

from __future__ import annotations

from lcsm_jax.layers import diagonal, method_oscillations, oscillation, oscillation_time, ssm

OSCILLATIONS = {
    "none": oscillation.Oscillation,
    "o0": oscillation.O0,
    "o1": oscillation.O1,
    "o2": oscillation.O2,
    "o3": oscillation.O3,
    "o4": oscillation.O4,
    "o5": oscillation.O5,
    "o6": oscillation.O6,
    "o7": oscillation.O7,
    "o8": oscillation.O8,
    "o9": oscillation.O9,
    "o10": oscillation.O10,
    "o11": oscillation_time.O11,
    "o12": oscillation_time.O12,
    "selective_ssm": ssm.SelectiveSSM,
    "scalar_ssm": ssm.ScalarSSM,
    "retnet": method_oscillations.RetNetDecay,
    "cosformer": method_oscillations.CosFormerRotation,
    "lrpe": method_oscillations.LrpeRotation,
    "hgrn2": method_oscillations.HGRN2Gate,
    "rwkv4": method_oscillations.RWKV4Decay,
    "s4d": diagonal.S4DDiagonal,
    "lru": diagonal.LRUDiagonal,
    "mega_ema": diagonal.MegaEMA,
}
