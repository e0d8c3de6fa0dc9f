"""LrcSSM against the linear recurrences it was compared with (Farsang et al., arXiv 2505.21717):
LRU and S5 (both MIMO: one state shared by all channels) and Mamba, each as the sequence mixer of
the same classifier (configs/uea.py: encoder, 2 blocks of width 64, per-step logits averaged),
same optimiser, budget and seeds. Task uea only.

    python study.py --study lrcssm --task uea --budget cpu --out docs/studies/uea_japanesevowels
    python study.py --study lrcssm --task uea --budget cpu --set dataset=OSULeaf \
        --out docs/studies/uea_osuleaf
"""

from lcsm_jax.train.study import Cell, Study

STUDY = Study(
    name="lrcssm",
    title="LrcSSM vs LRU, S5 and Mamba on UEA/UCR classification",
    claim=(
        "LrcSSM: a nonlinear RNN solved in parallel matches or beats LRU, S5 and Mamba on long "
        "time-series classification."
    ),
    cells=(
        Cell("LrcSSM", {"model": "lrcssm"}, "nonlinear"),
        Cell("LRU (MIMO)", {"model": "lru"}, "linear"),
        Cell("S5 (MIMO)", {"model": "s5"}, "linear"),
        Cell("Mamba", {"model": "mamba"}, "selective"),
    ),
)
