"""Every method the pipeline can train, as a frozen description: one registry for the pipeline, the
results collector and the dashboard.

A method is an architecture, a stage, the loss terms it trains with and the model switches it sets
(``ModelConfig`` field -> value). Stage-2 methods retrain from scratch on the discovery of the
stage-1 ``hitts`` run of the same pipeline folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

ARCH_NAMES = ("stl", "mtl", "hitts")


@dataclass(frozen=True)
class Method:
    """One trainable method.

    name: key in ``metrics.json``, run folders and the dashboard.
    label: how tables and plots print it.
    arch: "stl", "mtl" or "hitts".
    stage: 1 (labelled data only) or 2 (from scratch with the stage-1 teacher's discovery).
    use_pseudo_labels, use_feature_targets: the L_p and L_f terms (stage 2 only).
    model_switches: ``ModelConfig`` overrides, as (field, value) pairs.
    paper: where the paper has the row ("Table 5" ...), empty for this project's diagnostics.
    """

    name: str
    label: str
    arch: str
    stage: int = 1
    use_pseudo_labels: bool = False
    use_feature_targets: bool = False
    model_switches: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    paper: str = ""

    def __post_init__(self) -> None:
        if self.arch not in ARCH_NAMES:
            raise ValueError(f"method {self.name!r}: unknown arch {self.arch!r}")
        if self.stage not in (1, 2):
            raise ValueError(f"method {self.name!r}: stage must be 1 or 2")
        if self.stage == 1 and (self.use_pseudo_labels or self.use_feature_targets):
            raise ValueError(f"method {self.name!r}: L_p / L_f need stage 2")

    @property
    def loss_terms(self) -> tuple[str, ...]:
        return (
            ("L_s",)
            + (("L_p",) if self.use_pseudo_labels else ())
            + (("L_f",) if self.use_feature_targets else ())
        )


_ALL = (
    Method("stl", "STL", "stl", paper="Tables 1-5"),
    Method("mtl", "MTL", "mtl", paper="Tables 1-5"),
    Method("hitts", "HiTTs", "hitts", paper="Table 5"),
    Method(
        "hitts_no_oe",
        "HiTTs w/o OE",
        "hitts",
        model_switches=(("use_orthogonal_embeddings", False),),
        paper="Table 5",
    ),
    Method(
        "hitts_no_inter",
        "HiTTs w/o inter-task",
        "hitts",
        model_switches=(("use_inter_task", False),),
        paper="Table 5",
    ),
    Method(
        "hitts_no_intra",
        "HiTTs w/o intra-task",
        "hitts",
        model_switches=(("use_intra_task", False),),
        paper="Table 5",
    ),
    Method(
        "hitts_no_global",
        "HiTTs w/o global tokens",
        "hitts",
        model_switches=(("use_global_tokens", False),),
        paper="Table 5",
    ),
    Method(
        "hitts_no_fine",
        "HiTTs w/o fine tokens",
        "hitts",
        model_switches=(("use_fine_tokens", False),),
        paper="Table 5",
    ),
    # diagnostics of this project (issue 10), not in the paper
    Method(
        "hitts_small_init", "HiTTs, tokens N(0, 0.05^2)", "hitts", model_switches=(("token_init_std", 0.05),)
    ),
    Method(
        "hitts_gate_scale",
        "HiTTs, per-channel gate scale",
        "hitts",
        model_switches=(("gate_channel_scale", True),),
    ),
    Method(
        "hitts_frozen_tokens",
        "HiTTs, global tokens not trained",
        "hitts",
        model_switches=(("train_global_tokens", False),),
    ),
    Method(
        "hitts_bypass", "HiTTs, heads also read F_s", "hitts", model_switches=(("head_reads_shared", True),)
    ),
    Method("hitts_lf", "HiTTs + L_f", "hitts", stage=2, use_feature_targets=True, paper="Table 5"),
    Method("hitts_lp", "HiTTs + L_p", "hitts", stage=2, use_pseudo_labels=True, paper="Table 5"),
    Method(
        "hitts_pseudo",
        "HiTTs + L_p + L_f",
        "hitts",
        stage=2,
        use_pseudo_labels=True,
        use_feature_targets=True,
        paper="Tables 1-5",
    ),
)

METHODS = MappingProxyType({m.name: m for m in _ALL})
"""name -> Method, in the order tables print them."""

DEFAULT_METHODS = ("stl", "mtl", "hitts", "hitts_pseudo")


def get_method(name: str) -> Method:
    """The registered method ``name``; fails with the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {list(METHODS)}")
    return METHODS[name]


def method_label(name: str) -> str:
    """Printable label of a method; an unknown name is printed as it is."""
    return METHODS[name].label if name in METHODS else name
