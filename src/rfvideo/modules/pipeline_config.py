"""From a training YAML (and its checkpoint) to an `RFVideoPipeline`, building only what inference uses.

`rfvideo generate / sample / serve / export --config X.yaml --ckpt last.ckpt` come here. Of the config they
read `model.init_args.{generator, vae, text_encoder}` (each a `class_path` + `init_args`), the schedule,
`num_latent_frames`, `latent_size` and `generator_lora`; the reward models, the data module and the Trainer
are never built, so a machine that only generates needs neither the reward weights nor the prompt file.
With a checkpoint, the generator's `init_checkpoint` (stage 1's weights, which the checkpoint replaces) is
not read either.

Every `class_path` these sections name is checked against `ALLOWED_COMPONENTS` (plus the caller's
`allow_classes`) *before* anything is imported, so a config from an untrusted folder cannot run code by
naming a module; `inference_problems` lists every missing input path, one per problem, before any weight
loads.

Checkpoints: a Lightning checkpoint of the recipes (`state_dict` with `generator.*` / `generator_ema.*`;
LoRA runs: the adapters, the base from the config) loads strictly; any other file is an original Wan /
Self-Forcing / CausVid generator checkpoint and goes through `load_original_checkpoint`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rfvideo.models.vae import num_pixel_frames
from rfvideo.pipeline import FewStepFlowScheduler, RFVideoPipeline
from rfvideo.pipeline.pipeline import vae_factors

__all__ = [
    "ALLOWED_COMPONENTS",
    "component_references",
    "inference_config",
    "inference_problems",
    "pipeline_from_config",
]

#: The `class_path`s inference may build, per component (functions or classes, "module.name").
ALLOWED_COMPONENTS: dict[str, frozenset[str]] = {
    "generator": frozenset(
        {
            "rfvideo.modules.components.load_causal_wan",
            "rfvideo.models.tiny.tiny_causal_wan",
            "rfvideo.models.CausalWanTransformer",
            "rfvideo.models.causal_wan.CausalWanTransformer",
        }
    ),
    "vae": frozenset(
        {
            "rfvideo.modules.components.load_wan_vae",
            "rfvideo.models.tiny.tiny_wan_vae",
            "rfvideo.demo.world.codec.PoolingVideoCodec",
            "rfvideo.demo.world.keyframe_codec.KeyframeCodec",
        }
    ),
    "text_encoder": frozenset(
        {
            "rfvideo.modules.components.load_text_encoder",
            "rfvideo.models.tiny.tiny_text_encoder",
            "rfvideo.demo.world.text_encoders.word_text_encoder",
            "rfvideo.demo.world.text_encoders.minilm_text_encoder",
        }
    ),
}
COMPONENTS = ("generator", "vae", "text_encoder")


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            # A new class_path replaces the section (its init_args belong to another class).
            if "class_path" in v and v.get("class_path") != out[k].get("class_path"):
                out[k] = dict(v)
            else:
                out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def inference_config(
    config_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    allow_classes: Sequence[str] = (),
) -> dict[str, Any]:
    """The inference part of one or more training YAMLs (merged in order, later files win).

    Returns:
        `{"generator", "vae", "text_encoder": {"class_path", "init_args"}, "model_class": str,
        "schedule": dict | None, "num_latent_frames": int | None, "latent_size": list | None,
        "generator_lora": dict | None}`.

    Raises:
        ValueError: a missing or unreadable file, no `model` section, a component missing, or a
            `class_path` outside the allow-list (named, before any import).
    """
    paths = [config_paths] if isinstance(config_paths, (str, os.PathLike)) else list(config_paths)
    if not paths:
        raise ValueError("no config given")
    merged: dict[str, Any] = {}
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise ValueError(f"--config: no such file: {str(path)!r}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"--config {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ValueError(f"--config {str(path)!r} is not a YAML mapping")
        merged = _deep_merge(merged, data)
    model = merged.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("init_args"), dict):
        raise ValueError(f"config {' + '.join(map(str, paths))} has no model.init_args section")
    args = model["init_args"]
    out: dict[str, Any] = {"model_class": str(model.get("class_path", ""))}
    _check_module_keys(out["model_class"], args)
    extra = set(allow_classes)
    for name in COMPONENTS:
        spec = args.get(name)
        if spec is None and name == "text_encoder":
            out[name] = None
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str):
            raise ValueError(f"config: model.init_args.{name} needs a class_path")
        cp = spec["class_path"]
        if cp not in ALLOWED_COMPONENTS[name] and cp not in extra:
            raise ValueError(
                f"config: model.init_args.{name}.class_path {cp!r} is not an allowed {name} "
                f"(allowed: {sorted(ALLOWED_COMPONENTS[name])}; --allow-class {cp} if you trust it)"
            )
        out[name] = {"class_path": cp, "init_args": dict(spec.get("init_args") or {})}
    for key in ("schedule", "num_latent_frames", "latent_size", "generator_lora"):
        out[key] = args.get(key)
    return out


def _module_parameters(model_class: str) -> set[str] | None:
    """The init arguments a recipe accepts (following `**kwargs` to its bases); None for a class outside
    rfvideo (not imported: the allow-list covers only the components)."""
    from rfvideo.modules.base import VideoGeneratorModule

    if not model_class.startswith("rfvideo."):
        return None
    module, name = model_class.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name, None)
    if not isinstance(cls, type) or not issubclass(cls, VideoGeneratorModule):
        return None
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {
            n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n != "self"
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()) or klass is VideoGeneratorModule:
            break
    return names


def _check_module_keys(model_class: str, args: Mapping[str, Any]) -> None:
    """A misspelt recipe argument is one line naming it and the nearest valid one (LightningCLI's check,
    without building anything)."""
    import difflib

    valid = _module_parameters(model_class)
    if valid is None:
        return
    for key in args:
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(
                f"config: model.init_args.{key} is not an argument of {model_class.rsplit('.', 1)[1]}{hint}"
            )


def _path_values(spec: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    keys = ("path", "state_dict_path", "init_checkpoint")
    args = (spec or {}).get("init_args", {})
    return [(k, args[k]) for k in keys if isinstance(args.get(k), str)]


def inference_problems(cfg: Mapping[str, Any], *, with_checkpoint: bool) -> list[str]:
    """Every missing input of the inference components, one line each (empty: good to build)."""
    from rfvideo.models.hub import resolve_pretrained

    problems = []
    for name in COMPONENTS:
        for key, value in _path_values(cfg.get(name)):
            if key == "init_checkpoint":
                if not with_checkpoint and not Path(value).expanduser().is_file():
                    problems.append(f"model.init_args.{name}.init_args.{key}: no such file: {value!r}")
                continue
            try:
                resolve_pretrained(value, what=f"model.init_args.{name}.init_args.{key}")
            except ValueError as e:
                problems.append(str(e))
    return problems


def component_references(cfg: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Components an exported pipeline folder can reference instead of copying: those loaded from a Wan
    diffusers folder or hub id by the standard loaders (`load_wan_vae`, `load_text_encoder`)."""
    refs: dict[str, tuple[str, str | None]] = {}
    vae = cfg.get("vae") or {}
    if vae.get("class_path") == "rfvideo.modules.components.load_wan_vae" and "path" in vae["init_args"]:
        refs["vae"] = (vae["init_args"]["path"], vae["init_args"].get("subfolder", "vae"))
    text = cfg.get("text_encoder") or {}
    if (
        text.get("class_path") == "rfvideo.modules.components.load_text_encoder"
        and "path" in text["init_args"]
    ):
        a = text["init_args"]
        refs["text_encoder"] = (a["path"], a.get("subfolder", "text_encoder"))
        refs["tokenizer"] = (a["path"], a.get("tokenizer_subfolder", "tokenizer"))
    return refs


def _build(name: str, spec: Mapping[str, Any]) -> Any:
    module, attr = spec["class_path"].rsplit(".", 1)
    factory = getattr(importlib.import_module(module), attr)
    try:
        inspect.signature(factory).bind(**spec["init_args"])
    except TypeError as e:  # a misspelt or missing argument: one line naming it, before anything is built
        raise ValueError(f"config: model.init_args.{name}.init_args for {spec['class_path']}: {e}") from None
    return factory(**spec["init_args"])


def _module_default(model_class: str, key: str) -> Any:
    """The recipe's default for `key` (read from its signature, not restated here)."""
    from rfvideo.modules.base import VideoGeneratorModule

    cls: Any = VideoGeneratorModule
    if model_class.startswith("rfvideo."):
        module, name = model_class.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name, VideoGeneratorModule)
    return inspect.signature(cls.__init__).parameters[key].default


def _schedule(spec: Any) -> FewStepFlowScheduler:
    if spec is None:
        return FewStepFlowScheduler()
    if isinstance(spec, Mapping):
        args = spec.get("init_args", spec) if "class_path" in spec else spec
        return FewStepFlowScheduler(**{k: v for k, v in args.items() if k != "class_path"})
    raise ValueError(f"config: model.init_args.schedule must be a mapping, got {spec!r}")


def _load_generator_weights(
    generator: Any, ckpt: str | os.PathLike[str], *, use_ema: bool, lora: Any
) -> None:
    """A recipe checkpoint's (EMA) generator into `generator`, strictly; else an original checkpoint."""
    from rfvideo.models.convert import load_original_checkpoint
    from rfvideo.utils.checkpoint import load_checkpoint

    path = Path(ckpt)
    data = None if path.suffix == ".safetensors" else load_checkpoint(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        sd = data["state_dict"]
        has_ema = any(k.startswith("generator_ema.") for k in sd)
        prefix = "generator_ema." if use_ema and has_ema else "generator."
        weights = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(f"--ckpt {str(path)!r} holds no {prefix}* weights")
        problem = _mismatch(generator.state_dict(), weights, lora=lora is not None)
        if problem is not None:
            raise ValueError(f"--ckpt {str(path)!r} is not from this config: {problem}")
        if lora is not None:  # the base comes from the config; the checkpoint holds the adapters
            from rfvideo.models.lora import is_adapter_key

            weights = {k: v for k, v in generator.state_dict().items() if not is_adapter_key(k)} | weights
        generator.load_state_dict(weights, strict=True)
        return
    load_original_checkpoint(path, key="generator_ema" if use_ema else "generator", model=generator)


def _mismatch(want: Mapping[str, Any], got: Mapping[str, Any], *, lora: bool) -> str | None:
    """The first way a checkpoint's generator weights `got` do not fit the config's generator `want`."""
    from rfvideo.models.lora import is_adapter_key

    ckpt_lora = next((k for k in got if is_adapter_key(k)), None)
    if ckpt_lora and not lora:
        return f"it holds LoRA adapters ({ckpt_lora!r}) but the config sets no generator_lora"
    if lora and not ckpt_lora:
        return "the config sets generator_lora but the checkpoint holds no LoRA adapters"
    needed = [k for k in want if not lora or is_adapter_key(k)]
    for k in needed:
        if k not in got:
            return f"weight {k!r} of the config's generator is missing from the checkpoint"
    for k, v in got.items():
        if k not in want:
            return f"checkpoint weight {k!r} is not in the config's generator"
        if tuple(v.shape) != tuple(want[k].shape):
            return (
                f"{k!r} has shape {tuple(v.shape)} in the checkpoint but {tuple(want[k].shape)} in the config"
            )
    return None


def pipeline_from_config(
    config_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    ckpt: str | os.PathLike[str] | None = None,
    *,
    use_ema: bool = True,
    allow_classes: Sequence[str] = (),
    merge_lora: bool = True,
) -> RFVideoPipeline:
    """Build the pipeline a training config describes (see the module docstring).

    Args:
        config_paths: One or more training YAMLs.
        ckpt: A recipe checkpoint (`last.ckpt`) or an original generator checkpoint; None: the config's
            weights as they are (e.g. a stage-1 `init_checkpoint`).
        use_ema: Take the checkpoint's EMA generator (what the paper evaluates), else the raw one.
        allow_classes: Further `class_path`s the config may name ("module.name").
        merge_lora: Merge a LoRA run's adapters into the base (`W + alpha / r B A`); False keeps the peft
            model (`rfvideo export --keep-adapters`).

    Raises:
        ValueError: every missing input (one per line), a class outside the allow-list, a checkpoint that
            does not fit the config's generator.
    """
    import time

    t0 = time.perf_counter()
    cfg = inference_config(config_paths, allow_classes=allow_classes)
    if ckpt is not None and not Path(ckpt).is_file():
        raise ValueError(f"--ckpt: no such file: {str(ckpt)!r}")
    problems = inference_problems(cfg, with_checkpoint=ckpt is not None)
    if problems:
        raise ValueError("\n".join(problems))
    gen_spec = dict(cfg["generator"])
    if ckpt is not None:  # the checkpoint replaces the stage-1 weights: do not read them
        gen_spec["init_args"] = {k: v for k, v in gen_spec["init_args"].items() if k != "init_checkpoint"}
    generator = _build("generator", gen_spec)
    lora = cfg["generator_lora"]
    if lora is not None:
        from rfvideo.models.lora import LoraOptions, apply_lora

        apply_lora(generator, lora if isinstance(lora, LoraOptions) else LoraOptions(**lora))
    if ckpt is not None:
        _load_generator_weights(generator, ckpt, use_ema=use_ema, lora=lora)
    if lora is not None and merge_lora:
        from rfvideo.models.lora import merge_lora as merge

        merge(generator)  # inference runs the merged weights (equal within fp32 rounding)
    vae = _build("vae", cfg["vae"])
    text = None if cfg["text_encoder"] is None else _build("text_encoder", cfg["text_encoder"])
    model_class = cfg["model_class"]
    f = cfg["num_latent_frames"] or _module_default(model_class, "num_latent_frames")
    h, w = cfg["latent_size"] or _module_default(model_class, "latent_size")
    tf, sf = vae_factors(vae)
    pipe = RFVideoPipeline(
        transformer=generator.eval(),
        vae=vae,
        scheduler=_schedule(cfg["schedule"]),
        text_encoder=text,
        num_frames=num_pixel_frames(int(f), tf),
        height=int(h) * sf,
        width=int(w) * sf,
    )
    pipe.load_seconds = time.perf_counter() - t0
    return pipe
