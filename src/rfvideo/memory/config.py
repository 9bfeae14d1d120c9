"""From experiment YAMLs to the inputs of the memory estimate (`estimate.py` holds the arithmetic).

Reads the YAMLs as written (merged like LightningCLI), the models' `config.json` files (or the published
`model_sizes.MODEL_SIZES` for absent folders), and takes every value a YAML leaves out from the signature
that would receive it at training time (the training module's `num_latent_frames`, `latent_size`,
`ema_decay`; the text encoder's `max_length`), so a changed default changes the estimate with it.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from rfvideo.memory.estimate import (
    STRATEGIES,
    MemoryEstimate,
    check_positive,
    estimate_grid,
    estimate_memory,
)
from rfvideo.utils.config_nodes import init_args

__all__ = [
    "ExperimentInputs",
    "estimate_from_config",
    "estimate_table",
    "frozen_bytes",
    "generator_builder",
    "load_yamls",
    "model_sizes",
    "read_experiment",
    "read_model_config",
    "signature_default",
    "strategy_name",
]

#: Who receives a value the YAML leaves out, when its node names no importable `rfvideo` class.
_MODULE_FALLBACK = "rfvideo.modules.base.VideoGeneratorModule"
_TEXT_ENCODER_FALLBACK = "rfvideo.modules.components.load_text_encoder"


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_yamls(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The YAMLs merged in order (later files override earlier ones, like LightningCLI)."""
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


def strategy_name(trainer: Mapping[str, Any]) -> str:
    """ "ddp" or "fsdp" for the trainer's strategy."""
    s = trainer.get("strategy")
    name = s.get("class_path", "") if isinstance(s, Mapping) else str(s or "ddp")
    low = name.lower()
    if "modelparallel" in low or "fsdp" in low:
        return "fsdp"
    if "ddp" in low or low in ("auto", "single_device"):
        return "ddp"
    raise ValueError(f"unknown strategy {name!r} (use DDPStrategy or ModelParallelStrategy / FSDP)")


def model_sizes(name: str | None) -> dict[str, Any] | None:
    """The published model configs `name` (`--preset`) stands for, None for None."""
    if name is None:
        return None
    from rfvideo.memory.model_sizes import MODEL_SIZES

    if name not in MODEL_SIZES:
        raise ValueError(f"unknown preset {name!r} (known: {sorted(MODEL_SIZES)})")
    return MODEL_SIZES[name]


def read_model_config(
    folder: str, subfolder: str | None, what: str, sizes: Mapping[str, Any] | None = None, key: str = ""
) -> dict[str, Any]:
    """`folder/subfolder/config.json`, else the `key` entry of the published `sizes`."""
    path = Path(folder) / (subfolder or "") / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    if sizes is not None and key in sizes:
        return dict(sizes[key])
    raise ValueError(
        f"{what} config {str(path)!r} does not exist (only config.json is needed; or pass a preset such "
        "as --preset wan2.1-t2v-1.3b)"
    )


def _callables(class_path: Any, fallback: str) -> list[Callable[..., Any]]:
    """The callable a YAML `class_path` names (only `rfvideo.*`: reading a config must not import
    arbitrary code), with its bases' `__init__`s, then `fallback`'s."""
    found: list[Callable[..., Any]] = []
    for path in (class_path, fallback):
        if not isinstance(path, str) or not path.startswith("rfvideo.") or "." not in path:
            continue
        module, name = path.rsplit(".", 1)
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        found += [k.__init__ for k in obj.__mro__] if inspect.isclass(obj) else [obj]
    return found


def signature_default(node: Any, name: str, fallback: str) -> Any:
    """The default of argument `name` of what the YAML `node` builds (its `class_path`, else `fallback`):
    the first signature in the class's MRO that declares it with a default (a subclass forwarding
    `**kwargs` takes its base's).

    Raises:
        ValueError: no signature declares a default for `name` (a renamed argument).
    """
    class_path = node.get("class_path") if isinstance(node, Mapping) else None
    for fn in _callables(class_path, fallback):
        try:
            param = inspect.signature(fn).parameters.get(name)
        except (TypeError, ValueError):
            continue
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    raise ValueError(f"no default for {name!r} in {class_path or fallback} (set it in the config)")


def _causal_kwargs(init: Mapping[str, Any]) -> dict[str, Any]:
    from rfvideo.models import CausalOptions

    names = {f for f in inspect.signature(CausalOptions).parameters}
    return {k: v for k, v in init.items() if k in names}


def generator_builder(cfg_json: Mapping[str, Any], init: Mapping[str, Any]) -> Any:
    """A zero-argument builder of the generator of `cfg_json` (its config.json) with the YAML's causal
    options and dtype (`init`, the generator's `init_args`)."""
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


def _image_reward_bytes(init: Mapping[str, Any], sizes: Mapping[str, Any] | None) -> int | None:
    from rfvideo.rewards.blip import blip_text_config, blip_vision_config

    med_path = init.get("med_config")
    if med_path is not None and Path(str(med_path)).is_file():
        med = json.loads(Path(str(med_path)).read_text())
    elif sizes is not None and "image_reward_med_config" in sizes:
        med = sizes["image_reward_med_config"]
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


def frozen_bytes(model_init: Mapping[str, Any], sizes: Mapping[str, Any] | None) -> dict[str, int | None]:
    """Weight bytes of the frozen parts that have a readable config (None: config not found)."""
    out: dict[str, int | None] = {}
    vae = init_args(model_init.get("vae"))
    if vae.get("path") is not None:
        try:
            from diffusers import AutoencoderKLWan

            cfg = read_model_config(vae["path"], vae.get("subfolder", "vae"), "VAE", sizes, "vae")
            with torch.device("meta"):
                m = AutoencoderKLWan.from_config(cfg)
            out["vae"] = (
                sum(p.numel() for p in m.parameters())
                * torch.empty((), dtype=getattr(torch, vae.get("dtype", "float32"))).element_size()
            )
        except ValueError:
            out["vae"] = None
    te = init_args(model_init.get("text_encoder"))
    if te.get("path") is not None:
        try:
            from transformers import UMT5Config, UMT5EncoderModel

            tcfg = read_model_config(
                te["path"], te.get("subfolder", "text_encoder"), "text encoder", sizes, "text_encoder"
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
        terms = init_args(rewards).get("terms") or {"reward": rewards}
        for name, node in terms.items():
            path = str((node or {}).get("class_path", "")) if isinstance(node, Mapping) else ""
            # Only ImageReward is sized (from its med_config); other rewards are built from checkpoints.
            known = path.endswith("load_image_reward")
            out[f"reward {name}"] = _image_reward_bytes(init_args(node), sizes) if known else None
    return out


@dataclass(frozen=True)
class ExperimentInputs:
    """What an experiment config gives the memory estimate."""

    build: Any
    """Zero-argument builder of the generator (see `generator_builder`)."""
    kwargs: dict[str, Any]
    """`estimate_memory` keyword arguments: batch, frames, latent and text shapes, dtype, EMA, frozen."""
    strategy: str
    world_size: int
    lora_rank: int | None


def _strict_int(name: str, value: Any) -> int:
    """A positive int as written (2.7 is not 2, "4" is not 4, True is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _setting(model_node: Mapping[str, Any], name: str) -> Any:
    """`model.init_args.<name>` as written, else the training module's default."""
    model = init_args(model_node)
    return model[name] if name in model else signature_default(model_node, name, _MODULE_FALLBACK)


def read_experiment(
    config_paths: Iterable[str | Path], world_size: int | None, strategy: str | None, preset: str | None
) -> ExperimentInputs:
    """The estimate's inputs from the YAMLs (`world_size` / `strategy` None: the trainer's).

    Raises:
        ValueError: a missing or malformed value, named.
    """
    cfg = load_yamls(list(config_paths))
    sizes = model_sizes(preset)
    trainer = cfg.get("trainer", {}) or {}
    model_node = cfg.get("model", {}) or {}
    model = init_args(model_node)
    gen = init_args(model.get("generator"))
    if "path" not in gen:
        raise ValueError("the config has no model.init_args.generator.init_args.path")
    if strategy is None:
        strategy = strategy_name(trainer)
    elif strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use one of {STRATEGIES})")
    if world_size is None:
        dev = trainer.get("devices", 1)
        world_size = dev if isinstance(dev, int) else 1
    check_positive(world_size=world_size)
    cfg_json = read_model_config(
        gen["path"], gen.get("subfolder", "transformer"), "generator", sizes, "transformer"
    )
    te_node = model.get("text_encoder")
    te = init_args(te_node)
    max_length = te.get("max_length", signature_default(te_node, "max_length", _TEXT_ENCODER_FALLBACK))
    precision = str(trainer.get("precision", "32"))
    compute = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else None
    latent = _setting(model_node, "latent_size")
    lora = model.get("generator_lora")
    lora_rank = int(lora.get("rank", 16)) if isinstance(lora, Mapping) else None
    if not isinstance(latent, (list, tuple)) or len(latent) != 2:
        raise ValueError(f"model.init_args.latent_size must be [h, w], got {latent!r}")
    kwargs = dict(
        batch_size=_strict_int("data.init_args.batch_size", init_args(cfg.get("data")).get("batch_size", 1)),
        num_latent_frames=_strict_int(
            "model.init_args.num_latent_frames", _setting(model_node, "num_latent_frames")
        ),
        latent_size=(_strict_int("latent_size[0]", latent[0]), _strict_int("latent_size[1]", latent[1])),
        text_shape=(int(max_length), int(cfg_json.get("text_dim", 4096))),
        compute_dtype=compute,
        ema=float(_setting(model_node, "ema_decay") or 0) > 0,
        frozen=frozen_bytes(model, sizes),
    )
    return ExperimentInputs(generator_builder(cfg_json, gen), kwargs, strategy, world_size, lora_rank)


_DEFAULT = object()


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
        preset: published model sizes (`rfvideo.memory.model_sizes.MODEL_SIZES`) for absent model folders.
    """
    p = read_experiment(config_paths, world_size, strategy, preset)
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
    """`estimate_grid` for the experiment YAMLs: every (LoRA rank, strategy, world size).

    Returns:
        `MemoryEstimate`s ordered by LoRA rank, then strategy, then world size.
    """
    for ws in world_sizes:
        check_positive(world_size=ws)
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown strategy {s!r} (use one of {STRATEGIES})")
    p = read_experiment(config_paths, None, None, preset)
    return estimate_grid(
        p.build, world_sizes=world_sizes, strategies=strategies, lora_ranks=lora_ranks, **p.kwargs
    )
