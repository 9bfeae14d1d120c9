"""LoRA adapters on the causal generator (peft), for reward fine-tuning that fits on fewer or smaller GPUs.

`apply_lora` injects peft's `lora.Linear` layers in place (the model stays a `CausalWanTransformer`, so its
config, KV cache and attention modes are untouched) and freezes every base weight; `merge_lora` folds the
adapters back into plain `nn.Linear`s; `remove_lora` drops them unmerged. A layer `W` becomes

    y = W x + (alpha / rank) B A dropout(x),     A: (rank in), B: (out rank), B = 0 at init

(Hu et al. 2021, eq. 3), so an adapted model equals its base bit for bit until the first step.

Parameter names: base weights move to `<layer>.base_layer.weight`, adapters are
`<layer>.lora_A.default.weight`
and `<layer>.lora_B.default.weight` (`is_adapter_key`). `lora_state_dict` drops the adapter name, as peft's
own `adapter_model.safetensors` files do.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "DEFAULT_TARGET_MODULES",
    "LoraOptions",
    "apply_lora",
    "is_adapter_key",
    "load_adapters",
    "lora_options_of",
    "lora_parameter_count",
    "lora_state_dict",
    "merge_lora",
    "remove_lora",
    "save_adapters",
]

# The attention projections (self and cross) and the two FFN linears of every Wan block, by the suffix of
# their module name (peft matches `name == t or name.endswith("." + t)`). The embedders and the output
# head are left frozen, as in DRaFT / VADER style reward LoRA.
DEFAULT_TARGET_MODULES: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
ADAPTER_NAME = "default"
# peft's file names, so that `peft` tooling reads an exported adapter folder as is.
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"


@dataclass(frozen=True, kw_only=True)
class LoraOptions:
    """Which linears of the generator get adapters, and their size."""

    rank: int = 16
    """Adapter rank r (> 0)."""
    alpha: float | None = None
    """Scale numerator: the update is multiplied by alpha / rank. None means alpha = rank (scale 1)."""
    dropout: float = 0.0
    """Dropout on the adapter's input, in [0, 1)."""
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    """Module-name suffixes of the `nn.Linear`s to adapt; each must match at least one module."""
    seed: int = 0
    """Seed of the A matrices' initialisation (B starts at zero), independent of the global RNG."""

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"generator_lora.rank must be an int > 0, got {self.rank!r}")
        if self.alpha is not None and (
            isinstance(self.alpha, bool) or not math.isfinite(float(self.alpha)) or float(self.alpha) <= 0
        ):
            raise ValueError(f"generator_lora.alpha must be a number > 0 or None, got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"generator_lora.dropout must lie in [0, 1), got {self.dropout!r}")
        targets = self.target_modules
        if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"generator_lora.target_modules must be non-empty module names, got {targets!r}")
        object.__setattr__(self, "target_modules", tuple(targets))

    @property
    def scale(self) -> float:
        """alpha / rank."""
        return (float(self.alpha) if self.alpha is not None else float(self.rank)) / self.rank

    def to_dict(self) -> dict[str, object]:
        """Plain types only (a checkpoint loaded with `weights_only=True` can hold it)."""
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


def is_adapter_key(name: str) -> bool:
    """Whether a parameter / state-dict key belongs to a LoRA adapter (`...lora_A...`, `...lora_B...`)."""
    return any(part.startswith("lora_") for part in name.split("."))


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _check_targets(model: nn.Module, targets: tuple[str, ...]) -> None:
    """Each target matches at least one module, and only `nn.Linear`s (checked before peft runs)."""
    modules = list(model.named_modules())
    for t in targets:
        hits = [(n, m) for n, m in modules if n and _matches(n, t)]
        if not hits:
            raise ValueError(
                f"generator_lora.target_modules: {t!r} matches no module of {type(model).__name__}"
            )
        wrong = [n for n, m in hits if not isinstance(m, nn.Linear)]
        if wrong:
            raise ValueError(
                f"generator_lora.target_modules: {t!r} matches {wrong[0]!r}, a "
                f"{type(dict(modules)[wrong[0]]).__name__}, not an nn.Linear"
            )


def lora_options_of(model: nn.Module) -> LoraOptions | None:
    """The options `apply_lora` used on `model`, or None for a model without adapters."""
    opts = getattr(model, "_rfvideo_lora", None)
    return opts if isinstance(opts, LoraOptions) else None


def apply_lora(generator: nn.Module, options: LoraOptions) -> nn.Module:
    """Add LoRA adapters to `generator` in place and freeze everything else.

    Args:
        generator: a `CausalWanTransformer` (any module whose linears the targets name).
        options: rank, alpha, dropout, target modules, init seed.

    Returns:
        `generator` itself, still a `CausalWanTransformer`; only adapter parameters require grad.

    Raises:
        ValueError: a target matching no module (or a non-Linear one), or a model that already has adapters.
    """
    if not isinstance(options, LoraOptions):
        raise ValueError(f"options must be LoraOptions, got {type(options).__name__}")
    if lora_options_of(generator) is not None or any(
        is_adapter_key(n) for n, _ in generator.named_parameters()
    ):
        raise ValueError(f"{type(generator).__name__} already has LoRA adapters")
    _check_targets(generator, options.target_modules)
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=options.rank,
        lora_alpha=float(options.alpha if options.alpha is not None else options.rank),
        lora_dropout=float(options.dropout),
        target_modules=list(options.target_modules),
        bias="none",
        init_lora_weights=True,
    )
    inject_adapter_in_model(config, generator, adapter_name=ADAPTER_NAME)
    generator.requires_grad_(False)
    g = torch.Generator().manual_seed(int(options.seed))
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if not is_adapter_key(name):
                continue
            p.requires_grad_(True)
            if ".lora_A." in name and not p.is_meta:
                # peft's kaiming_uniform_(a=sqrt(5)) bound, 1/sqrt(fan_in), drawn from our own generator
                bound = 1.0 / math.sqrt(p.shape[1])
                p.copy_(
                    (torch.rand(p.shape, generator=g, dtype=torch.float32) * 2 - 1).mul_(bound).to(p.dtype)
                )
    generator._rfvideo_lora = options
    return generator


def _strip(generator: nn.Module, *, merge: bool) -> nn.Module:
    from peft.tuners.lora import LoraLayer

    if lora_options_of(generator) is None:
        raise ValueError(f"{type(generator).__name__} has no LoRA adapters (apply_lora was not called)")
    layers = [(n, m) for n, m in generator.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in layers:
        if merge:
            layer.merge(safe_merge=True)  # safe: refuses a merge that produces NaN/Inf
        parent_name, _, child = name.rpartition(".")
        parent = generator.get_submodule(parent_name) if parent_name else generator
        setattr(parent, child, layer.get_base_layer())
    for attr in ("peft_config", "_rfvideo_lora"):
        if attr in generator.__dict__:
            delattr(generator, attr)
    return generator


def merge_lora(generator: nn.Module) -> nn.Module:
    """Fold the adapters into their base weights (`W + scale B A`) in place and drop the adapter layers.

    Returns the same object, now a plain `CausalWanTransformer` with the base's parameter names (its
    `save_pretrained` folder loads with `CausalWanTransformer.from_pretrained`). Pass a copy to keep the
    adapted model.
    """
    return _strip(generator, merge=True)


def remove_lora(generator: nn.Module) -> nn.Module:
    """Drop the adapters unmerged (in place): the base model as it was before `apply_lora`."""
    return _strip(generator, merge=False)


def lora_state_dict(generator: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors, keyed as in peft's adapter files (`blocks.0.attn1.to_q.lora_A.weight`)."""
    if lora_options_of(generator) is None:
        raise ValueError(f"{type(generator).__name__} has no LoRA adapters (apply_lora was not called)")
    from peft import get_peft_model_state_dict

    return dict(get_peft_model_state_dict(generator, adapter_name=ADAPTER_NAME))


def save_adapters(generator: nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write `adapter_model.safetensors` + `adapter_config.json` (peft's format) into `folder`."""
    from safetensors.torch import save_file

    options = lora_options_of(generator)
    sd = lora_state_dict(generator)  # raises without adapters
    assert options is not None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(out / ADAPTER_WEIGHTS_NAME))
    config = generator.peft_config[ADAPTER_NAME].to_dict()
    config["rfvideo_lora_options"] = options.to_dict()
    for k, v in list(config.items()):  # sets / enums are not JSON
        if isinstance(v, set):
            config[k] = sorted(v)
        elif hasattr(v, "value"):
            config[k] = v.value
    (out / ADAPTER_CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return out / ADAPTER_WEIGHTS_NAME


def load_adapters(generator: nn.Module, folder: str | os.PathLike[str]) -> nn.Module:
    """`apply_lora` with the options saved in `folder`, then load its adapter weights strictly."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_file, weights = folder / ADAPTER_CONFIG_NAME, folder / ADAPTER_WEIGHTS_NAME
    if not cfg_file.is_file() or not weights.is_file():
        raise ValueError(f"{str(folder)!r} holds no {ADAPTER_CONFIG_NAME} + {ADAPTER_WEIGHTS_NAME}")
    saved = json.loads(cfg_file.read_text(encoding="utf-8")).get("rfvideo_lora_options")
    if not isinstance(saved, dict):
        raise ValueError(f"{str(cfg_file)!r} has no 'rfvideo_lora_options' (not written by rfvideo)")
    apply_lora(generator, LoraOptions(**{**saved, "target_modules": tuple(saved["target_modules"])}))
    sd = load_file(str(weights))
    expected = lora_state_dict(generator)
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{str(weights)!r} does not fit the model: missing {missing[:1]}, unexpected {unexpected[:1]}"
        )
    for k, v in sd.items():
        if v.shape != expected[k].shape:
            raise ValueError(
                f"{str(weights)!r}: {k!r} has shape {tuple(v.shape)}, the model {tuple(expected[k].shape)}"
            )
    set_peft_model_state_dict(generator, sd, adapter_name=ADAPTER_NAME)
    return generator


def lora_parameter_count(generator: nn.Module, options: LoraOptions) -> int:
    """Adapter parameters `apply_lora(generator, options)` would add: sum of rank * (in + out) per target.

    Reads shapes only, so it works on a meta-device model (no memory allocated).
    """
    _check_targets(generator, options.target_modules)
    total = 0
    for name, m in generator.named_modules():
        if name and isinstance(m, nn.Linear) and any(_matches(name, t) for t in options.target_modules):
            total += options.rank * (m.in_features + m.out_features)
    return total
