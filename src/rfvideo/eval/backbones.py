"""Build the per-dimension backbones from local files (never downloads).

``load_backbones({"subject_consistency": "/models/dino-vitb16", ...})`` returns ``{dimension: backbone}``
in the form the dimension functions take. Each ``load_*`` function here is the loader of one entry of the
dimension registry (``rfvideo.eval.registry``).

What each path must be:
    subject_consistency: a transformers ViT directory of DINO ViT-B/16 (``facebook/dino-vitb16`` saved with
        ``save_pretrained``). VBench loads the same weights through ``torch.hub.load("facebookresearch/dino",
        "dino_vitb16")``; to use that instead, build it yourself from a local clone
        (``torch.hub.load(clone_dir, "dino_vitb16", source="local", pretrained=False)`` + ``load_state_dict``
        of ``dino_vitbase16_pretrain.pth``) and pass the module (its output is the CLS feature). The
        transformers port interpolates position embeddings for non-square frames slightly differently
        from DINO's own code, so scores agree closely but not bit-for-bit with VBench.
    background_consistency, appearance_style: a transformers CLIP ViT-B/32 directory (model + tokenizer).
    aesthetic_quality: ``{"clip": <CLIP ViT-L/14 dir>, "head": <sa_0_4_vit_l_14_linear.pth>}``.
    imaging_quality: ``musiq_spaq_ckpt-358bb6af.pth``; needs ``pyiqa`` installed.
    dynamic_degree: a RAFT state dict (``raft-things.pth``, or torchvision's ``raft_large`` C_T_V1 weights,
        which are the same network ported); needs torchvision.
    motion_smoothness: ``amt-s.pth``; needs the ``vbench`` package (its third_party AMT code).
    overall_consistency, temporal_style: ``ViClip-InternVid-10M-FLT.pth``; needs the ``vbench`` package and
        ``bpe_simple_vocab_16e6.txt.gz`` (``{"weights": ..., "bpe": ...}``).
    temporal_flickering: no model (pass None or leave it out).

Precision: ``precision="vbench"`` loads CLIP (background consistency, aesthetic quality, appearance style)
in fp16 on CUDA, as VBench's ``clip.load`` does; on the CPU, and for every other backbone, fp32 (VBench's
too). The default "fp32" keeps every backbone in fp32 on any device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from rfvideo.utils.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from rfvideo.eval.registry import LoadContext

PathSpec = str | os.PathLike | Mapping[str, str] | None


def _path(dimension: str, value: Any, key: str | None = None) -> str:
    if key is not None:
        if not isinstance(value, Mapping) or key not in value:
            raise ValueError(f"{dimension}: spec must be a dict with key {key!r}, got {value!r}")
        value = value[key]
    p = os.fspath(value)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{dimension}: backbone path does not exist: {p}")
    return p


class HFCLIP:
    """transformers ``CLIPModel`` as the callables the CLIP dimensions take."""

    def __init__(
        self, path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        from transformers import CLIPModel, CLIPTokenizer

        self.model = CLIPModel.from_pretrained(path).to(device=device, dtype=dtype).eval()
        self.dtype = dtype
        self.tokenizer = CLIPTokenizer.from_pretrained(path)
        self.device = device
        self.logit_scale = float(self.model.logit_scale.detach().exp())

    @staticmethod
    def _tensor(out: Any) -> torch.Tensor:
        # transformers 5 returns an output object (pooler_output = projected embedding); 4.x a tensor.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(n 3 224 224)`` CLIP-normalised -> ``(n d)`` projected image embeddings."""
        x = pixel_values.to(device=self.device, dtype=self.dtype)
        return self._tensor(self.model.get_image_features(pixel_values=x))

    def text(self, texts: list[str]) -> torch.Tensor:
        """``list[str]`` -> ``(m d)`` projected text embeddings (77-token CLIP context, truncated)."""
        tok = self.tokenizer(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        return self._tensor(self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()}))


class HFDINO:
    """transformers ``ViTModel`` (DINO weights) -> CLS feature of the last layer (after the final norm)."""

    def __init__(self, path: str, device: torch.device | str = "cpu") -> None:
        from transformers import ViTModel

        self.model = ViTModel.from_pretrained(path, add_pooling_layer=False).to(device).eval()
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x.to(self.device), interpolate_pos_encoding=True)
        return out.last_hidden_state[:, 0]


def _aesthetic_head(path: str) -> torch.nn.Module:
    state = load_checkpoint(path)
    if "weight" not in state:
        raise ValueError(f"aesthetic_quality: {path} is not a Linear(768, 1) state dict (keys {list(state)})")
    head = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict(state)
    return head.eval()


def _needs(module: str, dimension: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{dimension}: loading its backbone needs `{module}` ({e})") from e


def _clip(path: str, ctx: LoadContext) -> HFCLIP:
    key = f"clip:{path}"
    if key not in ctx.cache:
        ctx.cache[key] = HFCLIP(path, ctx.device, ctx.clip_dtype)
    return ctx.cache[key]


def load_dino(value: PathSpec, ctx: LoadContext) -> HFDINO:
    """subject_consistency: a transformers ViT directory of DINO ViT-B/16 weights."""
    return HFDINO(_path("subject_consistency", value), ctx.device)


def load_clip(value: PathSpec, ctx: LoadContext) -> HFCLIP:
    """background_consistency / appearance_style: a transformers CLIP ViT-B/32 directory (shared)."""
    return _clip(_path("clip", value), ctx)


def load_aesthetic(value: PathSpec, ctx: LoadContext) -> tuple[Callable[[torch.Tensor], torch.Tensor], Any]:
    """aesthetic_quality: ``{"clip": CLIP ViT-L/14 dir, "head": LAION linear head .pth}``."""
    d = "aesthetic_quality"
    c = _clip(_path(d, value, "clip"), ctx)
    return c.image, _aesthetic_head(_path(d, value, "head")).to(ctx.device)


def load_musiq(value: PathSpec, ctx: LoadContext) -> Any:
    """imaging_quality: pyiqa's MUSIQ with the SPAQ checkpoint."""
    d = "imaging_quality"
    musiq_arch = _needs("pyiqa.archs.musiq_arch", d)
    m = musiq_arch.MUSIQ(pretrained_model_path=_path(d, value)).to(ctx.device)
    m.training = False
    return m


def load_raft(value: PathSpec, ctx: LoadContext) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """dynamic_degree: torchvision's ``raft_large`` with a RAFT state dict, as a 0..255 flow callable."""
    d = "dynamic_degree"
    raft_mod = _needs("torchvision.models.optical_flow", d)
    raft = raft_mod.raft_large(weights=None)
    raft.load_state_dict(load_checkpoint(_path(d, value)))
    raft = raft.to(ctx.device).eval()

    def flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return raft(a / 127.5 - 1.0, b / 127.5 - 1.0, num_flow_updates=20)[-1]

    return flow


def load_amt(value: PathSpec, ctx: LoadContext) -> Any:
    """motion_smoothness: AMT-S from VBench's third_party code and ``amt-s.pth``."""
    from rfvideo.eval.motion_smoothness import AMTInterpolator

    d = "motion_smoothness"
    vb = _needs("vbench", d)
    from omegaconf import OmegaConf  # a vbench dependency
    from vbench.third_party.amt.utils.build_utils import build_from_cfg

    cfg = os.path.join(os.path.dirname(vb.__file__), "third_party/amt/cfgs/AMT-S.yaml")
    net = build_from_cfg(OmegaConf.load(cfg).network)
    ckpt = load_checkpoint(_path(d, value))
    net.load_state_dict(ckpt["state_dict"])
    return AMTInterpolator(net.to(ctx.device).eval())


def load_viclip(value: PathSpec, ctx: LoadContext) -> Any:
    """overall_consistency / temporal_style: ``{"weights": ViCLIP .pth, "bpe": bpe vocab .txt.gz}``."""
    d = "viclip"
    key = f"viclip:{_path(d, value, 'weights')}"
    if key not in ctx.cache:
        viclip_mod = _needs("vbench.third_party.ViCLIP.viclip", d)
        tok_mod = _needs("vbench.third_party.ViCLIP.simple_tokenizer", d)
        tok = tok_mod.SimpleTokenizer(_path(d, value, "bpe"))
        ctx.cache[key] = viclip_mod.ViCLIP(tokenizer=tok, pretrain=_path(d, value, "weights"))
        ctx.cache[key] = ctx.cache[key].to(ctx.device).eval()
    return ctx.cache[key]


def load_backbones(
    spec: Mapping[str, PathSpec], device: torch.device | str = "cpu", precision: str = "fp32"
) -> dict[str, Any]:
    """Load one backbone per requested dimension from local paths (each through its registry loader).

    Args:
        spec: ``{dimension: path or dict}`` (see the module docstring for what each entry must be).
        device: where to put the models.
        precision: "fp32" or "vbench" (VBench's: CLIP in fp16 on CUDA; see the module docstring).

    Returns:
        ``{dimension: backbone}``: for aesthetic_quality a ``(clip_image, head)`` tuple, for the CLIP
        dimensions an ``HFCLIP``, for the others a callable / module.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: unknown dimension, one rfvideo does not implement, or a malformed entry.
        ImportError: an optional package the backbone's code lives in is missing.
    """
    from rfvideo.eval.registry import LoadContext, load_registered

    return load_registered(spec, LoadContext(device=device, precision=precision))
