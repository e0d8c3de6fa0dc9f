"""LCSM paper, oscillation-construction study: o_type 1..12 (SPEC §2's table) with
data-dependent e and s, the paper's "12 scenarios".

    python study.py --study oscillation --task mqar --budget cpu --out docs/studies/mqar
    python study.py --study oscillation --task lm --budget cpu --out docs/studies/lm
"""

from lcsm_jax.train.study import Cell, Study

OPT = "model.mixer_options."
KIND = {
    1: ("DD K⊗D product", "DD"),
    2: ("DD, D-wise", "DD"),
    3: ("DD, K-wise (GLA)", "DD"),
    4: ("DI, K-wise", "DI"),
    5: ("DI, D-wise", "DI"),
    6: ("DD K × DI K×D", "DD+DI"),
    7: ("DD D × DI K×D", "DD+DI"),
    8: ("DI K × DD D", "DD+DI"),
    9: ("DD K × DI D", "DD+DI"),
    10: ("all ones", "constant"),
    11: ("complex rotation", "constant"),
    12: ("cumulative softmax", "DD"),
}
STUDY = Study(
    name="oscillation",
    title="LCSM oscillation construction: o_type 1..12, e and s data-dependent",
    claim=(
        "The paper: how o is constructed matters; complex oscillation helps, and data-dependent "
        "decays do well on language modelling."
    ),
    common={"model": "lcsm"},
    cells=tuple(
        Cell(f"o_type {o}: {text}", {OPT + "o_type": o}, group) for o, (text, group) in KIND.items()
    ),
)
