"""`M2Config`: the Monarch Mixer sequence mixer (SPEC §5) as one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses

from lcsm_jax.m2.longconv import METHODS
from lcsm_jax.nn.linear import LINEAR_KINDS

KERNELS = ("hyena", "ssm")


@dataclasses.dataclass(frozen=True)
class M2Config:
    """One M2 mixer (Fu et al., Monarch Mixer, arXiv 2310.12109).

    Attributes:
      embed_dim: model width M.
      kernel: "hyena" (implicit MLP filter, long conv by FFT/Monarch; catalogue "m2") or "ssm"
        (sum-of-exponentials kernel run as an EOS recurrence; catalogue "m2_ssm").
      max_len: longest sequence; the Hyena filter normalises positions by it and decoding keeps
        this many inputs.
      short_conv: kernel of the causal depthwise conv over the 3M projected channels.
      filter_order, filter_emb_dim, filter_freq: Hyena filter MLP width, positional features
        (odd, >= 3) and initial sine frequency.
      long_conv: "fft" or "monarch" (the DFT as an order-2 Monarch product); Hyena only.
      bidirectional: BERT-style two-sided kernel (non-causal, no decoding); Hyena only.
      residual_conv: add a second long conv of the raw input (M2-BERT's residual long conv).
      state_dim: K, complex states per channel of the "ssm" kernel.
      projection: kind of the in/out projections ("dense", "blockdiag", "monarch").
      nblocks: blocks of the structured projections.
    """

    embed_dim: int
    kernel: str = "hyena"
    max_len: int = 2048
    short_conv: int = 3
    filter_order: int = 64
    filter_emb_dim: int = 5
    filter_freq: float = 10.0
    long_conv: str = "fft"
    bidirectional: bool = False
    residual_conv: bool = True
    state_dim: int = 16
    projection: str = "dense"
    nblocks: int = 4

    def __post_init__(self):
        for name in ("embed_dim", "max_len", "short_conv", "filter_order", "state_dim", "nblocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"M2Config.{name} must be a positive int, got {value!r}")
        choices = (("kernel", KERNELS), ("long_conv", METHODS), ("projection", LINEAR_KINDS))
        for name, valid in choices:
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"M2Config.{name}={getattr(self, name)!r}; valid: {', '.join(valid)}"
                )
        if self.kernel == "ssm" and (self.bidirectional or self.long_conv != "fft"):
            raise ValueError(
                "M2Config: the 'ssm' kernel runs as a causal recurrence; bidirectional and "
                "long_conv apply to the 'hyena' kernel only"
            )
        if self.filter_emb_dim < 3 or self.filter_emb_dim % 2 == 0:
            raise ValueError(
                f"M2Config.filter_emb_dim must be odd and >= 3, got {self.filter_emb_dim}"
            )
