"""Functional sequence-mixing ops in the conventions of flash-linear-attention and mamba_ssm, each a
thin layer over `lcsm_jax.eos.eos_scan` (or, for RWKV-4's ratio, its own log-sum-exp scan).

    from lcsm_jax import ops
    o, ht = ops.gla(q, k, v, g, output_final_state=True)          # fla: q, k [B,T,H,K], v [B,T,H,V]
    y = ops.selective_scan(u, delta, A, B, C, D=D, z=z, delta_softplus=True)   # mamba_ssm layout
    y = ops.ssd(x, dt, A, B, C, D=D, dt_bias=dt_bias, dt_softplus=True)        # Mamba-2

| op | EOS stages (e, i, log o, s) | from |
|---|---|---|
| `gla` | k, v, g [K-wise], scale·q | fla `chunk_gla` |
| `simple_gla` | k, v, g [scalar per head], scale·q | fla `chunk_simple_gla` |
| `retention` | k, v, log(1-2^(-5-h)) [fixed, per head], scale·q | fla `chunk_retention` |
| `linear_attn` | k, v, 0, scale·q (`normalize`: ÷ q·Σk) | fla `chunk_linear_attn` |
| `rwkv6` | k, v, w [K-wise], scale·r, plus the bonus u | fla `chunk_rwkv6` |
| `hgrn` | 1, x, g [D-wise], 1 (K = 1) | fla `naive_recurrent_hgrn` |
| `rwkv4_wkv` | exp(k), v and 1, -w [per channel]: a ratio, in log-sum-exp form | RWKV-4 CUDA WKV |
| `selective_scan` | B_t, Δ_t u_t, Δ_t A [K-wise per channel], C_t | `selective_scan_ref` |
| `delta_rule`, `gated_delta_rule`, `kda` | β k, v, (I - β k kᵀ) Diag(α), scale·q | fla `chunk_*` |
| `ssd` | B_t, Δ_t x_t, Δ_t A_h [scalar per head], C_t | `mamba_chunk_scan_combined` |

Every op takes `backend` ("auto" and the `eos_scan` backends) and computes in float32 (states are
float32; outputs take the dtype of v / u / x). Beyond the reference libraries' arguments, each op
takes `segment_ids` ([B, T] ints; the state restarts where the id changes) for packed batches with
B > 1; fla's `cu_seqlens` (B = 1) gives per-sequence initial and final states.
"""

from lcsm_jax.ops.delta import delta_rule, gated_delta_rule, kda, l2_normalize
from lcsm_jax.ops.fla import gla, hgrn, linear_attn, retention, retention_decays, rwkv6, simple_gla
from lcsm_jax.ops.mamba import selective_scan, ssd
from lcsm_jax.ops.rwkv4 import rwkv4_wkv

__all__ = [
    "delta_rule",
    "gated_delta_rule",
    "gla",
    "hgrn",
    "kda",
    "l2_normalize",
    "linear_attn",
    "retention",
    "retention_decays",
    "rwkv4_wkv",
    "rwkv6",
    "selective_scan",
    "simple_gla",
    "ssd",
]
