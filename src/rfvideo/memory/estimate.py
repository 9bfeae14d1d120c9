"""Per-GPU memory estimate of one reward-forcing training step from the experiment YAMLs alone.

Only the models' `config.json` files are read (or a published preset, `--preset wan2.1-t2v-1.3b`, when the
folders are not downloaded): modules are built on the meta device (parameter counts) or under
FakeTensorMode (the activation peak of the gradient chunk, counted by torch's MemTracker), so the estimate
works before any weight is downloaded and allocates nothing at real size.

What is counted per GPU (batch b = the data module's batch_size):
- generator weights, its EMA copy, gradients and AdamW's two moments (fp32 like the weights); with LoRA the
  weights are the frozen base plus the adapters, and EMA, gradients and moments exist for the adapters only;
  DDP keeps full replicas; FSDP2 (per block, then the root) shards all four by the world size and adds
  one gathered block (weights + gradient in the compute dtype) and the root's own parameters;
- activations of the chunk that carries the gradient (the rollout keeps grad only from the last chunk),
  measured on fake tensors with and without activation checkpointing;
- the rollout's KV cache (self-attention K/V of every held frame plus the cross-attention K/V of the text);
- the frozen VAE, text encoder and ImageReward, as weights only.
Not counted: the VAE decode and reward forward activations, the allocator's fragmentation / CUDA context.

Only the fake step depends on the model, LoRA rank and checkpointing; the world size and strategy change
the per-GPU share of the states only. `estimate_table` therefore counts one step per (LoRA rank,
checkpointing) and derives every (strategy, world size) row by arithmetic (`shard_estimate`).
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

__all__ = [
    "STRATEGIES",
    "GeneratorProfile",
    "MemoryEstimate",
    "estimate_from_config",
    "estimate_memory",
    "estimate_table",
    "format_table",
    "profile_generator",
    "shard_estimate",
]

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


def _preset(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    from rfvideo.memory.presets import PRESETS

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {sorted(PRESETS)})")
    return PRESETS[name]


def _read_json(
    folder: str, subfolder: str | None, what: str, preset: Mapping[str, Any] | None = None, key: str = ""
) -> dict[str, Any]:
    path = Path(folder) / (subfolder or "") / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    if preset is not None and key in preset:
        return dict(preset[key])
    raise ValueError(
        f"{what} config {str(path)!r} does not exist (only config.json is needed; or pass a preset such "
        "as --preset wan2.1-t2v-1.3b)"
    )


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

    build.cache_key = json.dumps(kwargs, sort_keys=True, default=str) + str(dtype)  # type: ignore[attr-defined]
    return build


_PROFILES: dict[tuple[Any, ...], GeneratorProfile] = {}
"""Profiles already counted in this process, by (builder's config, shapes, dtype, rank): a CLI call or
notebook cell that asks again for the same config gets the same numbers without re-running the fake steps."""


def _init_args(node: Any) -> dict[str, Any]:
    return ((node or {}).get("init_args", {}) or {}) if isinstance(node, Mapping) else {}


def _image_reward_bytes(init: Mapping[str, Any], preset: Mapping[str, Any] | None) -> int | None:
    from rfvideo.rewards.blip import blip_text_config, blip_vision_config

    med_path = init.get("med_config")
    if med_path is not None and Path(str(med_path)).is_file():
        med = json.loads(Path(str(med_path)).read_text())
    elif preset is not None and "image_reward_med_config" in preset:
        med = preset["image_reward_med_config"]
    else:
        return None
    from transformers import BlipTextModel, BlipVisionModel

    from rfvideo.rewards.image_reward import ImageRewardMLP

    vision_cfg = blip_vision_config(init.get("vit", "large"), image_size=int(init.get("image_size", 224)))
    text_cfg = blip_text_config(med, encoder_width=vision_cfg.hidden_size)
    with torch.device("meta"):
        parts = [BlipVisionModel(vision_cfg), BlipTextModel(text_cfg, add_pooling_layer=False)]
        parts.append(ImageRewardMLP(text_cfg.hidden_size))
    size = torch.empty((), dtype=getattr(torch, str(init.get("dtype", "float32")))).element_size()
    return sum(p.numel() for m in parts for p in m.parameters()) * size


def _frozen_bytes(model_init: Mapping[str, Any], preset: Mapping[str, Any] | None) -> dict[str, int | None]:
    """Weight bytes of the frozen parts that have a readable config (None: config not found)."""
    out: dict[str, int | None] = {}
    vae = _init_args(model_init.get("vae"))
    if vae.get("path") is not None:
        try:
            from diffusers import AutoencoderKLWan

            cfg = _read_json(vae["path"], vae.get("subfolder", "vae"), "VAE", preset, "vae")
            with torch.device("meta"):
                m = AutoencoderKLWan.from_config(cfg)
            out["vae"] = (
                sum(p.numel() for p in m.parameters())
                * torch.empty((), dtype=getattr(torch, vae.get("dtype", "float32"))).element_size()
            )
        except ValueError:
            out["vae"] = None
    te = _init_args(model_init.get("text_encoder"))
    if te.get("path") is not None:
        try:
            from transformers import UMT5Config, UMT5EncoderModel

            tcfg = _read_json(
                te["path"], te.get("subfolder", "text_encoder"), "text encoder", preset, "text_encoder"
            )
            known = {k: v for k, v in tcfg.items() if not k.startswith("_") and k != "architectures"}
            with torch.device("meta"):
                m = UMT5EncoderModel(UMT5Config(**known))
            size = torch.empty((), dtype=getattr(torch, te.get("dtype", "bfloat16"))).element_size()
            out["text_encoder"] = sum(p.numel() for p in m.parameters()) * size
        except ValueError:
            out["text_encoder"] = None
    rewards = model_init.get("rewards")
    if rewards is not None:
        terms = _init_args(rewards).get("terms") or {"reward": rewards}
        for name, node in terms.items():
            path = str((node or {}).get("class_path", "")) if isinstance(node, Mapping) else ""
            # Only ImageReward is sized (from its med_config); other rewards are built from checkpoints.
            known = path.endswith("load_image_reward")
            out[f"reward {name}"] = _image_reward_bytes(_init_args(node), preset) if known else None
    return out


@dataclass(frozen=True)
class GeneratorProfile:
    """What one fake step says about the generator; independent of world size and strategy."""

    param_bytes: int
    """All parameters as stored (the base plus any adapters)."""
    trainable_bytes: int
    """Parameters that train (all of them, or the adapters only)."""
    block_numel: int
    """Parameters of the largest block (FSDP gathers one block at a time)."""
    block_trainable_numel: int
    root_numel: int
    """Parameters outside the blocks (FSDP's root unit)."""
    activations: int
    activations_checkpointed: int
    lora_rank: int | None = None


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
    lora_rank: int | None = None
    """None: full fine-tuning; else LoRA adapters of this rank train alone."""

    def total(self, checkpointing: bool = True) -> int:
        """Expected peak in bytes (frozen parts whose size is unknown count as 0)."""
        act = self.activations_checkpointed if checkpointing else self.activations
        fixed = self.weights + self.ema + self.optimizer + self.gathered + self.kv_cache
        # The peak is either inside backward (activations + the gradients made so far) or after it (all
        # gradients, activations freed).
        return fixed + max(act, self.grads) + sum(v for v in self.frozen.values() if v)

    def rows(self) -> list[tuple[str, float | None]]:
        """(name, GiB) rows for printing; None where a part could not be sized."""
        what = "generator" if self.lora_rank is None else f"generator (base + LoRA r{self.lora_rank})"
        rows: list[tuple[str, float | None]] = [
            (f"{what} weights", self.weights / _GIB),
            ("EMA (trainable parameters)", self.ema / _GIB),
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


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if v <= 0:
            raise ValueError(f"{name} {v} must be > 0")


def profile_generator(
    build_generator: Any,
    *,
    latent_shape: tuple[int, int, int, int, int],
    text_shape: tuple[int, int, int],
    compute_dtype: torch.dtype | None = torch.bfloat16,
    lora_rank: int | None = None,
) -> GeneratorProfile:
    """Parameter counts (meta device) and the activation peaks with and without checkpointing (fake step).

    Args:
        build_generator: zero-argument callable returning the `CausalWanTransformer`.
        latent_shape: `(b c f h w)` of the chunk that carries the gradient.
        text_shape: `(b n d)` of the prompt embeddings.
        compute_dtype: mixed-precision compute dtype (None: fp32 everywhere).
        lora_rank: LoRA adapters of this rank train alone (None: full fine-tuning).
    """
    from rfvideo.memory.fake_step import _adapters_stay_put, add_lora, depth_extrapolated_peak

    if lora_rank is not None:
        _check_positive(lora_rank=lora_rank)
    key = getattr(build_generator, "cache_key", None)
    if key is not None:
        key = (key, tuple(latent_shape), tuple(text_shape), str(compute_dtype), lora_rank)
        if key in _PROFILES:
            return _PROFILES[key]
    with torch.device("meta"):
        meta = build_generator()
        if lora_rank is not None:
            with _adapters_stay_put():
                meta = add_lora(meta, lora_rank)
    params = list(meta.parameters())
    blocks = list(meta.blocks)
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    acts = [
        depth_extrapolated_peak(
            build_generator, len(blocks), latent_shape, text_shape, checkpointing=ck,
            autocast_dtype=compute_dtype, lora_rank=lora_rank,
        ).activations
        for ck in (False, True)
    ]  # fmt: skip
    profile = GeneratorProfile(
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        trainable_bytes=sum(p.numel() * p.element_size() for p in params if p.requires_grad),
        block_numel=max(sum(p.numel() for p in b.parameters()) for b in blocks),
        block_trainable_numel=max(sum(p.numel() for p in b.parameters() if p.requires_grad) for b in blocks),
        root_numel=sum(p.numel() for p in params if id(p) not in in_blocks),
        activations=acts[0],
        activations_checkpointed=acts[1],
        lora_rank=lora_rank,
    )
    if key is not None:
        _PROFILES[key] = profile
    return profile


def shard_estimate(
    profile: GeneratorProfile,
    *,
    strategy: str,
    world_size: int,
    kv_cache: int,
    compute_dtype: torch.dtype | None = torch.bfloat16,
    ema: bool = True,
    frozen: Mapping[str, int | None] | None = None,
) -> MemoryEstimate:
    """The per-GPU estimate of `profile` under `strategy` on `world_size` GPUs (arithmetic only).

    DDP keeps every state whole on each GPU. FSDP divides weights, EMA, gradients and AdamW state by the world
    size and adds one gathered block plus the root in the compute dtype. Activations and the KV cache belong
    to the GPU's own batch and do not change with the world size.
    """
    _check_positive(world_size=world_size)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use one of {STRATEGIES})")
    shard = world_size if strategy == "fsdp" else 1
    csize = torch.empty((), dtype=compute_dtype or torch.float32).element_size()
    gathered = 0
    if strategy == "fsdp":
        gathered = (profile.block_numel + profile.block_trainable_numel + profile.root_numel) * csize
    w, tr = profile.param_bytes, profile.trainable_bytes
    return MemoryEstimate(
        strategy=strategy,
        world_size=world_size,
        weights=-(-w // shard),
        ema=-(-tr // shard) if ema else 0,
        grads=-(-tr // shard),
        optimizer=-(-2 * tr // shard),
        gathered=gathered,
        activations=profile.activations,
        activations_checkpointed=profile.activations_checkpointed,
        kv_cache=kv_cache,
        frozen=dict(frozen or {}),
        lora_rank=profile.lora_rank,
    )


def _shapes(
    build_generator: Any, *, batch_size: int, num_latent_frames: int, latent_size: tuple[int, int],
    text_shape: tuple[int, int], compute_dtype: torch.dtype | None,
) -> tuple[tuple[int, int, int, int, int], tuple[int, int, int], int]:  # fmt: skip
    """(latent shape of the gradient chunk, text shape, KV-cache bytes) of a rollout."""
    _check_positive(batch_size=batch_size, num_latent_frames=num_latent_frames)
    with torch.device("meta"):
        meta = build_generator()
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
    return latent_shape, (batch_size, text_shape[0], text_shape[1]), self_kv + cross_kv


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
    lora_rank: int | None = None,
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
        ema: the module keeps an EMA copy of the trainable parameters.
        frozen: weight bytes of frozen parts (VAE, text encoder, reward), None for an unknown size.
        lora_rank: LoRA adapters of this rank train alone (None: full fine-tuning).
    """
    _check_positive(world_size=world_size)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use one of {STRATEGIES})")
    latent_shape, tshape, kv = _shapes(
        build_generator, batch_size=batch_size, num_latent_frames=num_latent_frames, latent_size=latent_size,
        text_shape=text_shape, compute_dtype=compute_dtype,
    )  # fmt: skip
    profile = profile_generator(
        build_generator, latent_shape=latent_shape, text_shape=tshape, compute_dtype=compute_dtype,
        lora_rank=lora_rank,
    )  # fmt: skip
    return shard_estimate(
        profile, strategy=strategy, world_size=world_size, kv_cache=kv, compute_dtype=compute_dtype, ema=ema,
        frozen=frozen,
    )  # fmt: skip


@dataclass(frozen=True)
class _Parsed:
    build: Any
    kwargs: dict[str, Any]
    strategy: str
    world_size: int
    lora_rank: int | None


def _parse(
    config_paths: Iterable[str | Path], world_size: int | None, strategy: str | None, preset: str | None
) -> _Parsed:
    cfg = _load_yamls(list(config_paths))
    presets = _preset(preset)
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
    _check_positive(world_size=world_size)
    cfg_json = _read_json(
        gen["path"], gen.get("subfolder", "transformer"), "generator", presets, "transformer"
    )
    data = (cfg.get("data", {}) or {}).get("init_args", {}) or {}
    te = (model.get("text_encoder", {}) or {}).get("init_args", {}) or {}
    precision = str(trainer.get("precision", "32"))
    compute = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else None
    latent = model.get("latent_size", [60, 104])
    lora = model.get("generator_lora")
    lora_rank = int(lora.get("rank", 16)) if isinstance(lora, Mapping) else None
    if not isinstance(latent, (list, tuple)) or len(latent) != 2:
        raise ValueError(f"model.init_args.latent_size must be [h, w], got {latent!r}")
    kwargs = dict(
        batch_size=_strict_int("data.init_args.batch_size", data.get("batch_size", 1)),
        num_latent_frames=_strict_int(
            "model.init_args.num_latent_frames", model.get("num_latent_frames", 21)
        ),
        latent_size=(_strict_int("latent_size[0]", latent[0]), _strict_int("latent_size[1]", latent[1])),
        text_shape=(int(te.get("max_length", 512)), int(cfg_json.get("text_dim", 4096))),
        compute_dtype=compute,
        ema=float(model.get("ema_decay", 0.99) or 0) > 0,
        frozen=_frozen_bytes(model, presets),
    )
    return _Parsed(_generator_builder(cfg_json, gen), kwargs, strategy, world_size, lora_rank)


_DEFAULT = object()


def _strict_int(name: str, value: Any) -> int:
    """A positive int as written (2.7 is not 2, "4" is not 4, True is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def estimate_from_config(
    config_paths: Iterable[str | Path],
    *,
    world_size: int | None = None,
    strategy: str | None = None,
    lora_rank: Any = _DEFAULT,
    preset: str | None = None,
) -> MemoryEstimate:
    """`estimate_memory` for the experiment YAMLs (later files override earlier ones, like LightningCLI).

    Args:
        config_paths: experiment YAML, then overlays (e.g. experiments/strategies/fsdp.yaml).
        world_size: GPUs; default the trainer's `devices` (1 when absent or "auto").
        strategy: "ddp" / "fsdp"; default from the trainer's strategy.
        lora_rank: LoRA rank (None: full fine-tuning); default the config's `generator_lora.rank`.
        preset: published model configs (`rfvideo.memory.presets.PRESETS`) for model folders that are absent.
    """
    p = _parse(config_paths, world_size, strategy, preset)
    rank = p.lora_rank if lora_rank is _DEFAULT else lora_rank
    return estimate_memory(p.build, world_size=p.world_size, strategy=p.strategy, lora_rank=rank, **p.kwargs)


def estimate_table(
    config_paths: Iterable[str | Path],
    *,
    world_sizes: Sequence[int] = (1, 2, 8),
    strategies: Sequence[str] = STRATEGIES,
    lora_ranks: Sequence[int | None] = (None, 16),
    preset: str | None = None,
) -> list[MemoryEstimate]:
    """Estimates for every (LoRA rank, strategy, world size): one fake step per (rank, checkpointing).

    Returns:
        `MemoryEstimate`s ordered by LoRA rank, then strategy, then world size.
    """
    for ws in world_sizes:
        _check_positive(world_size=ws)
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r} (use one of {STRATEGIES})")
    p = _parse(config_paths, None, None, preset)
    kw = p.kwargs
    latent_shape, tshape, kv = _shapes(
        p.build, batch_size=kw["batch_size"], num_latent_frames=kw["num_latent_frames"],
        latent_size=kw["latent_size"], text_shape=kw["text_shape"], compute_dtype=kw["compute_dtype"],
    )  # fmt: skip
    out = []
    for rank in lora_ranks:
        profile = profile_generator(
            p.build, latent_shape=latent_shape, text_shape=tshape, compute_dtype=kw["compute_dtype"],
            lora_rank=rank,
        )  # fmt: skip
        for s in strategies:
            for ws in world_sizes:
                out.append(
                    shard_estimate(
                        profile,
                        strategy=s,
                        world_size=ws,
                        kv_cache=kv,
                        compute_dtype=kw["compute_dtype"],
                        ema=kw["ema"],
                        frozen=kw["frozen"],
                    )  # fmt: skip
                )
    return out


def format_table(estimates: Sequence[MemoryEstimate]) -> str:
    """Markdown table of `total` GiB per GPU: a row per (strategy, GPUs), a column per (LoRA, ckpt)."""
    ranks = list(dict.fromkeys(e.lora_rank for e in estimates))
    keys = list(dict.fromkeys((e.strategy, e.world_size) for e in estimates))
    by = {(e.lora_rank, e.strategy, e.world_size): e for e in estimates}
    head = ["strategy", "GPUs"]
    for r in ranks:
        name = "full fine-tune" if r is None else f"LoRA r{r}"
        head += [f"{name}, checkpointing", f"{name}, no checkpointing"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (2 * len(ranks))]
    for s, ws in keys:
        cells = [s.upper(), str(ws)]
        for r in ranks:
            e = by.get((r, s, ws))
            cells += ["" if e is None else f"{e.total(ck) / _GIB:.1f} GiB" for ck in (True, False)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
