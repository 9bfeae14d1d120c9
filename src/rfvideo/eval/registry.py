"""The dimension registry: one entry per VBench dimension holds its scorer, its backbone loader and metadata.

Adding an in-loop dimension is one ``register(Dimension(...))`` call: ``score_dimension``,
``load_backbones``, ``score_video_folder``, the callback and the CLI all read this table. The built-in
entries are registered by ``rfvideo.eval.dimensions`` (imported with the package), so this module depends
on no scorer or backbone.

Shape legend: f frames, h/w height/width.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rfvideo.eval.aggregate import ALL_DIMENSIONS, QUALITY_DIMENSIONS, canonical_dimension
from rfvideo.eval.result import DimensionScore

PRECISIONS = ("fp32", "vbench")


@dataclass
class ScoreContext:
    """What a scorer may need besides videos and backbone (one entry per video where a list).

    Attributes:
        prompts: generation prompts (overall_consistency, temporal_style).
        styles: style phrases (appearance_style).
        fps: frame rates (dynamic_degree's sampling interval).
        device: where the model runs.
    """

    prompts: Sequence[str] | None = None
    styles: Sequence[str] | None = None
    fps: Sequence[float] = ()
    device: torch.device | str = "cpu"


@dataclass
class LoadContext:
    """Shared state of one ``load_backbones`` call.

    Attributes:
        device: where models go.
        precision: "fp32", or "vbench": VBench's own precision (OpenAI CLIP loads in fp16 on CUDA and in
            fp32 on the CPU; every other backbone stays fp32), so in-loop numbers on a GPU match VBench's.
        cache: models shared between dimensions (e.g. one CLIP ViT-B/32 for two dimensions).
    """

    device: torch.device | str = "cpu"
    precision: str = "fp32"
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def clip_dtype(self) -> torch.dtype:
        """fp16 only for precision "vbench" on CUDA (what ``clip.load`` does), else fp32."""
        on_cuda = torch.device(self.device).type == "cuda"
        return torch.float16 if self.precision == "vbench" and on_cuda else torch.float32


Scorer = Callable[[list[torch.Tensor], Any, ScoreContext], DimensionScore]
Loader = Callable[[Any, LoadContext], Any]


@dataclass(frozen=True)
class Dimension:
    """One VBench dimension.

    Attributes:
        name: VBench's key.
        backbone: the model VBench uses (for messages and the README table).
        source: VBench 0.1.5's file holding the formula.
        score: ``(videos, backbone, ctx) -> DimensionScore``; None when only VBench's evaluator computes it.
        load: ``(path spec, ctx) -> backbone`` from local files; None when no model is needed.
        needs: what the scorer reads from the context: any of "prompts", "styles", "fps".
        min_frames: frames a video must have.
    """

    name: str
    backbone: str
    source: str
    score: Scorer | None = None
    load: Loader | None = None
    needs: tuple[str, ...] = ()
    min_frames: int = 1

    @property
    def in_loop(self) -> bool:
        """True when rfvideo's own code computes this dimension."""
        return self.score is not None

    @property
    def needs_backbone(self) -> bool:
        return self.load is not None

    @property
    def group(self) -> str:
        return "quality" if self.name in QUALITY_DIMENSIONS else "semantic"


REGISTRY: dict[str, Dimension] = {}


def register(dim: Dimension) -> Dimension:
    """Add (or replace) a dimension; its name must be one of VBench's 16 keys."""
    key = canonical_dimension(dim.name)
    if key != dim.name:
        raise ValueError(f"register: use VBench's key {key!r}, not {dim.name!r}")
    bad = [n for n in dim.needs if n not in ("prompts", "styles", "fps")]
    if bad:
        raise ValueError(f"register: {dim.name}: unknown needs {bad}")
    REGISTRY[key] = dim
    return dim


def get_dimension(name: str) -> Dimension:
    """The registry entry of ``name`` (VBench key or spaced name)."""
    key = canonical_dimension(name)
    if key not in REGISTRY:
        raise ValueError(f"dimension {key!r} is not registered")
    return REGISTRY[key]


def implemented_dimensions() -> tuple[str, ...]:
    """Dimensions rfvideo's own code scores, in VBench's order."""
    return tuple(d for d in ALL_DIMENSIONS if d in REGISTRY and REGISTRY[d].in_loop)


def in_loop_dimension(name: str) -> Dimension:
    """The entry of an in-loop dimension; a ValueError naming it (and the alternatives) otherwise."""
    dim = get_dimension(name)
    if not dim.in_loop:
        raise ValueError(
            f"dimension {dim.name!r} is not implemented in rfvideo ({dim.backbone}); use "
            f"`rfvideo vbench --official` for it; implemented: {', '.join(implemented_dimensions())}"
        )
    return dim


def load_registered(spec: Mapping[str, Any], ctx: LoadContext) -> dict[str, Any]:
    """``{dimension: backbone}`` for ``{dimension: path spec}`` through each entry's loader."""
    out: dict[str, Any] = {}
    for name, value in spec.items():
        dim = in_loop_dimension(name)
        out[dim.name] = dim.load(value, ctx) if dim.load is not None else None
    return out
