"""Per-GPU memory estimate of one reward-forcing training step from the experiment YAMLs alone.

Only the models' `config.json` files are read: modules are built on the meta device (parameter counts)
or under FakeTensorMode (the activation peak of the gradient chunk, counted by torch's MemTracker), so the
estimate works before any weight is downloaded and allocates nothing at real size.

What is counted per GPU (batch b = the data module's batch_size):
- generator weights, its EMA copy, gradients and AdamW's two moments (fp32 like the weights);
  DDP keeps full replicas; FSDP2 (per block, then the root) shards all four by the world size and adds
  one gathered block (weights + gradient in the compute dtype) and the root's own parameters;
- activations of the chunk that carries the gradient (the rollout keeps grad only from the last chunk),
  measured on fake tensors with and without activation checkpointing;
- the rollout's KV cache (self-attention K/V of every held frame plus the cross-attention K/V of the text);
- the frozen VAE, text encoder (and reward model when its config can be read), as weights only.
Not counted: the VAE decode and reward forward activations, the allocator's fragmentation / CUDA context.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = ["STRATEGIES", "MemoryEstimate", "estimate_from_config", "estimate_memory"]

STRATEGIES = ("ddp", "fsdp")
_GIB = 1024**3


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _load_yamls(paths: Sequence[str | Path]) -> dict[str, Any]:
    if not paths:
        raise ValueError("estimate-memory needs at least one --config")
    cfg: dict[str, Any] = {}
    for p in paths:
        if not Path(p).is_file():
            raise ValueError(f"config {str(p)!r} does not exist")
        loaded = yaml.safe_load(Path(p).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config {str(p)!r} is not a YAML mapping")
        cfg = _merge(cfg, loaded)
    return cfg


def _strategy_name(trainer: Mapping[str, Any]) -> str:
    s = trainer.get("strategy")
    name = s.get("class_path", "") if isinstance(s, Mapping) else str(s or "ddp")
    low = name.lower()
    if "modelparallel" in low or "fsdp" in low:
        return "fsdp"
    if "ddp" in low or low in ("auto", "single_device"):
        return "ddp"
    raise ValueError(f"unknown strategy {name!r} (use DDPStrategy or ModelParallelStrategy / FSDP)")


def _read_json(folder: str, subfolder: str | None, what: str) -> dict[str, Any]:
    path = Path(folder) / (subfolder or "") / "config.json"
    if not path.is_file():
        raise ValueError(f"{what} config {str(path)!r} does not exist (only config.json is needed)")
    return json.loads(path.read_text())


def _nbytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _causal_kwargs(init: Mapping[str, Any]) -> dict[str, Any]:
    from rfvideo.models import CausalOptions

    names = {f for f in inspect.signature(CausalOptions).parameters}
    return {k: v for k, v in init.items() if k in names}


def _generator_builder(cfg_json: Mapping[str, Any], init: Mapping[str, Any]) -> Any:
    from rfvideo.models.causal_wan import CausalWanTransformer

    params = set(inspect.signature(CausalWanTransformer.__init__).parameters)
    kwargs = {k: v for k, v in cfg_json.items() if not k.startswith("_") and k in params}
    kwargs.update(_causal_kwargs(init))
    dtype = getattr(torch, str(init.get("dtype", "float32")))

    def build() -> torch.nn.Module:
        model = CausalWanTransformer(**kwargs)
        # Cast only when asked: `.to` on fake / meta modules swaps every tensor for nothing when fp32.
        return model if dtype == torch.float32 else model.to(dtype)

    return build


def _frozen_bytes(model_init: Mapping[str, Any]) -> dict[str, int | None]:
    """Weight bytes of the frozen parts that have a readable config (None: config not found)."""
    out: dict[str, int | None] = {}
    vae = model_init.get("vae", {}).get("init_args", {})
    if vae.get("path") is not None:
        try:
            from diffusers import AutoencoderKLWan

            cfg = _read_json(vae["path"], vae.get("subfolder", "vae"), "VAE")
            with torch.device("meta"):
                m = AutoencoderKLWan.from_config(cfg)
            out["vae"] = _nbytes(m.to(getattr(torch, vae.get("dtype", "float32"))))
        except ValueError:
            out["vae"] = None
    te = model_init.get("text_encoder", {}).get("init_args", {})
    if te.get("path") is not None:
        try:
            from transformers import AutoConfig, UMT5EncoderModel

            _read_json(te["path"], te.get("subfolder", "text_encoder"), "text encoder")
            tcfg = AutoConfig.from_pretrained(str(Path(te["path"]) / te.get("subfolder", "text_encoder")))
            with torch.device("meta"):
                m = UMT5EncoderModel(tcfg)
            out["text_encoder"] = _nbytes(m.to(getattr(torch, te.get("dtype", "bfloat16"))))
        except ValueError:
            out["text_encoder"] = None
    out["rewards"] = None  # reward models are built from their official checkpoints; not sized from config
    return out


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of one training step. `total(checkpointing)` sums the rows."""

    strategy: str
    world_size: int
    weights: int
    ema: int
    grads: int
    optimizer: int
    gathered: int
    """FSDP only: one unsharded block (weights + gradient, compute dtype) plus the root's parameters."""
    activations: int
    activations_checkpointed: int
    kv_cache: int
    frozen: dict[str, int | None] = field(default_factory=dict)

    def total(self, checkpointing: bool = True) -> int:
        """Expected peak in bytes (frozen parts whose size is unknown count as 0)."""
        act = self.activations_checkpointed if checkpointing else self.activations
        fixed = self.weights + self.ema + self.optimizer + self.gathered + self.kv_cache
        # The peak is either inside backward (activations + the gradients made so far) or after it (all
        # gradients, activations freed).
        return fixed + max(act, self.grads) + sum(v for v in self.frozen.values() if v)

    def rows(self) -> list[tuple[str, float | None]]:
        """(name, GiB) rows for printing; None where a part could not be sized."""
        rows: list[tuple[str, float | None]] = [
            ("generator weights", self.weights / _GIB),
            ("generator EMA", self.ema / _GIB),
            ("gradients", self.grads / _GIB),
            ("AdamW state", self.optimizer / _GIB),
        ]
        if self.strategy == "fsdp":
            rows.append(("FSDP gathered block + root", self.gathered / _GIB))
        rows += [
            ("activations + grads so far (no checkpointing)", self.activations / _GIB),
            ("activations + grads so far (checkpointing)", self.activations_checkpointed / _GIB),
            ("rollout KV cache", self.kv_cache / _GIB),
        ]
        rows += [(f"{k} (frozen weights)", None if v is None else v / _GIB) for k, v in self.frozen.items()]
        rows += [
            ("TOTAL with checkpointing", self.total(True) / _GIB),
            ("TOTAL without checkpointing", self.total(False) / _GIB),
        ]
        return rows


def estimate_memory(
    build_generator: Any,
    *,
    batch_size: int,
    num_latent_frames: int,
    latent_size: tuple[int, int],
    text_shape: tuple[int, int],
    world_size: int = 1,
    strategy: str = "ddp",
    compute_dtype: torch.dtype | None = torch.bfloat16,
    ema: bool = True,
    frozen: Mapping[str, int | None] | None = None,
) -> MemoryEstimate:
    """Estimate one step's per-GPU peak for a generator built by `build_generator()` (nothing allocated).

    Args:
        build_generator: zero-argument callable returning the `CausalWanTransformer`.
        batch_size: videos per GPU.
        num_latent_frames: latent frames of a rollout.
        latent_size: `(h, w)` latent height and width.
        text_shape: `(n, d)` tokens and width of the prompt embeddings.
        world_size: GPUs (> 0).
        strategy: "ddp" (full replicas) or "fsdp" (FSDP2 per block).
        compute_dtype: mixed-precision compute dtype (None: fp32 everywhere).
        ema: the module keeps an EMA copy of the generator.
        frozen: weight bytes of frozen parts (VAE, text encoder, reward), None for an unknown size.
    """
    if world_size <= 0:
        raise ValueError(f"world_size {world_size} must be > 0")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use one of {STRATEGIES})")
    for name, v in (("batch_size", batch_size), ("num_latent_frames", num_latent_frames)):
        if v <= 0:
            raise ValueError(f"{name} {v} must be > 0")
    from rfvideo.memory.fake_step import generator_step_peak

    with torch.device("meta"):
        meta = build_generator()
    w = _nbytes(meta)
    cfg = meta.config
    k = int(meta.num_frames_per_chunk)
    p_t, p_h, p_w = cfg.patch_size
    h, wd = latent_size
    tokens_per_frame = (h // p_h) * (wd // p_w)
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    cdt = compute_dtype or next(meta.parameters()).dtype
    csize = torch.empty((), dtype=cdt).element_size()
    # KV cache: a global cache holds every frame of the rollout; a local one the sinks + window (+ a chunk).
    causal = meta._causal
    if causal.local_attn_size is None or causal.local_attn_size < 0:
        held = num_latent_frames
    else:
        held = min(num_latent_frames, causal.sink_size + 2 * causal.local_attn_size + k)
    self_kv = 2 * cfg.num_layers * batch_size * held * tokens_per_frame * inner * csize
    cross_kv = 2 * cfg.num_layers * batch_size * text_shape[0] * inner * csize
    latent_shape = (batch_size, cfg.in_channels, min(k, num_latent_frames) * p_t, h, wd)
    tshape = (batch_size, text_shape[0], text_shape[1])
    peak = generator_step_peak(build_generator, latent_shape, tshape, autocast_dtype=compute_dtype)
    peak_ck = generator_step_peak(
        build_generator, latent_shape, tshape, checkpointing=True, autocast_dtype=compute_dtype
    )
    shard = world_size if strategy == "fsdp" else 1
    gathered = 0
    if strategy == "fsdp":
        block = max(sum(p.numel() for p in b.parameters()) for b in meta.blocks)
        in_blocks = sum(p.numel() for b in meta.blocks for p in b.parameters())
        root = sum(p.numel() for p in meta.parameters()) - in_blocks
        gathered = 2 * block * csize + root * csize
    return MemoryEstimate(
        strategy=strategy,
        world_size=world_size,
        weights=-(-w // shard),
        ema=-(-w // shard) if ema else 0,
        grads=-(-w // shard),
        optimizer=-(-2 * w // shard),
        gathered=gathered,
        activations=peak.activations,
        activations_checkpointed=peak_ck.activations,
        kv_cache=self_kv + cross_kv,
        frozen=dict(frozen or {}),
    )


def estimate_from_config(
    config_paths: Iterable[str | Path], *, world_size: int | None = None, strategy: str | None = None
) -> MemoryEstimate:
    """`estimate_memory` for the experiment YAMLs (later files override earlier ones, like LightningCLI).

    Args:
        config_paths: experiment YAML, then overlays (e.g. experiments/strategies/fsdp.yaml).
        world_size: GPUs; default the trainer's `devices` (1 when absent or "auto").
        strategy: "ddp" / "fsdp"; default from the trainer's strategy.
    """
    cfg = _load_yamls(list(config_paths))
    trainer = cfg.get("trainer", {}) or {}
    model = (cfg.get("model", {}) or {}).get("init_args", {}) or {}
    gen = (model.get("generator", {}) or {}).get("init_args", {}) or {}
    if "path" not in gen:
        raise ValueError("the config has no model.init_args.generator.init_args.path")
    if strategy is None:
        strategy = _strategy_name(trainer)
    elif strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use one of {STRATEGIES})")
    if world_size is None:
        dev = trainer.get("devices", 1)
        world_size = dev if isinstance(dev, int) else 1
    if world_size <= 0:
        raise ValueError(f"world_size {world_size} must be > 0")
    cfg_json = _read_json(gen["path"], gen.get("subfolder", "transformer"), "generator")
    build = _generator_builder(cfg_json, gen)
    data = (cfg.get("data", {}) or {}).get("init_args", {}) or {}
    te = (model.get("text_encoder", {}) or {}).get("init_args", {}) or {}
    precision = str(trainer.get("precision", "32"))
    compute = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else None
    latent = model.get("latent_size", [60, 104])
    return estimate_memory(
        build,
        batch_size=int(data.get("batch_size", 1)),
        num_latent_frames=int(model.get("num_latent_frames", 21)),
        latent_size=(int(latent[0]), int(latent[1])),
        text_shape=(int(te.get("max_length", 512)), int(cfg_json.get("text_dim", 4096))),
        world_size=world_size,
        strategy=strategy,
        compute_dtype=compute,
        ema=float(model.get("ema_decay", 0.99) or 0) > 0,
        frozen=_frozen_bytes(model),
    )
