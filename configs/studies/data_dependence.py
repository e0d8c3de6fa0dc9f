"""LCSM paper, data-dependence study: e_type × s_type (1 data-dependent, 0 a parameter) with a
data-dependent oscillation (o_type 1) and with a data-independent one (o_type 0), plus the
constructions the paper adds: complex (o_type 11, a fixed rotation), fixed (o_type 0 with the
hand-crafted ALiBi decay, o_learned False) and all ones (o_type 10: no decay).

    python study.py --study data_dependence --task mqar --budget cpu --out docs/studies/mqar
    python study.py --study data_dependence --task lm --budget cpu --out docs/studies/lm
"""

from lcsm_jax.train.study import Cell, Study

OPT = "model.mixer_options."


def _es(o_type: int, group: str) -> list[Cell]:
    word = {1: "DD", 0: "DI"}
    return [
        Cell(
            f"e {word[e]}, s {word[s]}, o {group}",
            {OPT + "e_type": e, OPT + "s_type": s, OPT + "o_type": o_type},
            f"o {group}",
        )
        for e in (1, 0)
        for s in (1, 0)
    ]


STUDY = Study(
    name="data_dependence",
    title="LCSM data dependence: e, s and o data-dependent (DD) or not (DI)",
    claim=(
        "The paper: data-dependent (data-driven) e, o and s are best for language modelling; "
        "hand-crafted (fixed) settings are better for retrieval (MQAR)."
    ),
    common={"model": "lcsm"},
    cells=(
        *_es(1, "DD"),
        *_es(0, "DI"),
        Cell("complex (o_type 11)", {OPT + "o_type": 11}, "constructed"),
        Cell(
            "fixed ALiBi (o_type 0)", {OPT + "o_type": 0, OPT + "o_learned": False}, "constructed"
        ),
        Cell("all ones (o_type 10)", {OPT + "o_type": 10}, "constructed"),
    ),
)
