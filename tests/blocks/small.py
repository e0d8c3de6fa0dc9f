"""Small settings of each full block of the catalogue at width 8 (the defaults are sized for
d_model >= 256), shared by the contract tests and the language-model tests."""

SMALL = {
    "linear_attention": {"num_heads": 2},
    "retnet": {"num_heads": 2},
    "gla": {"num_heads": 2, "gate_low_rank_dim": 4},
    "hgrn2": {"expand_ratio": 4},
    "mamba": {"d_state": 4},
    "mamba2": {"headdim": 4, "d_state": 4},
    "rwkv4": {},
    "rwkv6": {"head_size": 4, "mix_lora_rank": 2, "decay_lora_rank": 2},
    "lru": {"state_dim": 4},
    "s5": {"state_dim": 4},
    "deltanet": {"num_heads": 2},
    "gated_deltanet": {"num_heads": 2, "head_dim": 4},
}
