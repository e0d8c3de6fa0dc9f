"""LCSM paper, parameterisation study: the SSM parameterisation (c_type 0: Mamba-like Δ, A, B, C)
against the naive one (c_type 1: linear layers), e, o and s data-dependent (SPEC §2).

    python study.py --study parameterisation --task mqar --budget cpu --out docs/studies/mqar
"""

from lcsm_jax.train.study import Cell, Study

OPT = "model.mixer_options."
STUDY = Study(
    name="parameterisation",
    title="LCSM parameterisation: SSM (c_type 0) vs naive (c_type 1)",
    claim="The paper: the naive parameterisation (linear layers) beats the SSM one.",
    common={"model": "lcsm"},
    cells=(
        Cell("SSM (c_type 0)", {OPT + "c_type": 0}, "SSM"),
        Cell("naive (c_type 1)", {OPT + "c_type": 1}, "naive"),
    ),
)
