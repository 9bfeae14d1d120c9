"""What a training checkpoint of a recipe holds, and how it is read back.

Three rules live here, apart from the training step:

- which weights a checkpoint leaves out (frozen parts load their own weights; with LoRA, the generator's
  frozen base too) and which frozen-part state it keeps (the reward ensemble's running statistics);
- the hyperparameters, stored under `HPARAMS_KEY` and compared (not applied) on a resume;
- the loop state of a checkpoint written when a run reached `max_steps` before its epoch ended
  (`mend_end_of_run_loops`), so that extending a finished run resumes it exactly.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from rfvideo.models.lora import LoraOptions, is_adapter_key
from rfvideo.sampling import FlowMatchSchedule

__all__ = [
    "FROZEN_PREFIXES",
    "HPARAMS_KEY",
    "KEPT_STATE_PREFIXES",
    "changed_hparams",
    "is_frozen_key",
    "mend_end_of_run_loops",
    "module_init_from_checkpoint",
    "plain_hparam",
]

# Where `on_save_checkpoint` keeps the hyperparameters. Not Lightning's "hyper_parameters": LightningCLI's
# `fit --ckpt_path` parses that key over the YAML and the command line, so a changed setting would be
# silently replaced by the checkpoint's; here the given settings win and `on_load_checkpoint` lists each
# difference in a warning.
HPARAMS_KEY = "rfvideo_hyper_parameters"

# Submodules that load their own weights and never train; they are left out of training checkpoints.
FROZEN_PREFIXES: tuple[str, ...] = ("vae.", "text_encoder.", "rewards.")
# Training state that lives inside a frozen part and must survive a resume: the reward ensemble's running
# normalisation statistics (RewardEnsemble registers them as `running_{mean,var,count}_<term>`).
KEPT_STATE_PREFIXES: tuple[str, ...] = ("rewards.running_",)


def is_frozen_key(key: str, prefix: str = "", lora: bool = False) -> bool:
    """Left out of checkpoints: frozen parts, and with LoRA the generator's (and EMA's) frozen base."""
    if lora and key.startswith((prefix + "generator.", prefix + "generator_ema.")):
        return not is_adapter_key(key)
    return key.startswith(tuple(prefix + p for p in FROZEN_PREFIXES)) and not key.startswith(
        tuple(prefix + p for p in KEPT_STATE_PREFIXES)
    )


def plain_hparam(value: Any) -> Any:
    """A dataclass hyperparameter (e.g. `LoraOptions`) as a dict of its fields; anything else unchanged.

    Plain types only, so that `torch.load(weights_only=True)` reads the checkpoint back.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(value)
    return value


def changed_hparams(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """`(key, stored, given)` for every hyperparameter that differs (Lightning's bookkeeping keys ignored).

    Values are compared after YAML-like normalisation (tuples as lists), so `[60, 104]` equals `(60, 104)`.
    """

    def norm(v: Any) -> Any:
        v = plain_hparam(v)
        if isinstance(v, (tuple, list)):
            return [norm(x) for x in v]
        if isinstance(v, Mapping):
            return {k: norm(x) for k, x in v.items()}
        return v

    skip = {"_instantiator"}
    keys = sorted((set(stored) | set(given)) - skip)
    missing = object()
    out = []
    for k in keys:
        a, b = stored.get(k, missing), given.get(k, missing)
        if a is missing or b is missing or norm(a) != norm(b):
            out.append((k, None if a is missing else a, None if b is missing else b))
    return out


def module_init_from_checkpoint(
    cls: type, checkpoint: Mapping[str, Any], path: str, built: Mapping[str, Any]
) -> dict[str, Any]:
    """The keyword arguments that rebuild recipe `cls` from a checkpoint: the stored hyperparameters (as
    the objects `__init__` takes), overridden by `built` (the generator, VAE, ... a checkpoint does not hold).

    Raises:
        ValueError: `checkpoint` is not a Lightning checkpoint of a recipe (one line naming `path`).
        TypeError: a built model `cls` needs is missing from `built` (one line naming them).
    """
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(
            f"{path!r} is not a Lightning checkpoint (no 'state_dict'); a pipeline "
            "folder loads with rfvideo.pipeline.RFVideoPipeline.from_pretrained"
        )
    # The base needs a generator and a VAE; a recipe may need more (RewardForcingModule: rewards).
    params = inspect.signature(cls.__init__).parameters
    extra = [n for n, p in params.items() if n == "rewards" and p.default is inspect.Parameter.empty]
    missing = [n for n in ("generator", "vae", *extra) if n not in built]
    if missing:
        raise TypeError(
            f"{cls.__name__}.load_from_checkpoint needs the built {missing} (a checkpoint holds weights, "
            f"not models): pass them as keyword arguments, or for inference use "
            f"rfvideo.modules.pipeline_from_config(config, {path!r})"
        )
    stored = dict(checkpoint.get(HPARAMS_KEY) or checkpoint.get("hyper_parameters") or {})
    if isinstance(stored.get("schedule"), Mapping):
        stored["schedule"] = FlowMatchSchedule(**stored["schedule"])
    if isinstance(stored.get("generator_lora"), Mapping):
        stored["generator_lora"] = LoraOptions(**stored["generator_lora"])
    if isinstance(stored.get("latent_size"), list):
        stored["latent_size"] = tuple(stored["latent_size"])
    return {k: v for k, v in stored.items() if not k.startswith("_")} | dict(built)


def _finished(progress: Mapping[str, Any]) -> bool:
    """A Lightning progress record whose last item ran to completion (ready = started = processed =
    completed), in both its `total` and `current` counts."""
    return all(
        len({progress[part][k] for k in ("ready", "started", "processed", "completed")}) == 1
        for part in ("total", "current")
    )


def mend_end_of_run_loops(checkpoint: dict[str, Any]) -> bool:
    """Make a checkpoint written when a run stopped at `max_steps` part-way through an epoch resume that
    epoch where it stopped, as a checkpoint written inside the epoch does. Returns whether it changed.

    Why: when `max_steps` ends a run mid-epoch, Lightning still runs the epoch-end hooks, and a checkpoint
    they write (the end-of-run `last.ckpt`) records the epoch as finished. Resumed with a larger
    `max_steps`, the loop would then start a new epoch and reshuffle, where an uninterrupted run goes on
    with the rest of this one: the losses differ. The batch record says whether the epoch really ended
    (`is_last_batch`); when it did not, the epoch and batch counts are put back to what a checkpoint
    written after that same batch, inside the epoch, holds: the epoch started but not processed, the
    batch processed but its end hooks not completed (Lightning completes them on restart). The data
    loader's own state (prompts consumed this epoch) is the same in both checkpoints.
    """
    loops = checkpoint.get("loops")
    fit = loops.get("fit_loop") if isinstance(loops, Mapping) else None
    if not isinstance(fit, dict):
        return False
    epochs, batches = fit.get("epoch_progress"), fit.get("epoch_loop.batch_progress")
    if not isinstance(epochs, dict) or not isinstance(batches, dict):
        return False
    try:
        if batches.get("is_last_batch", True) or not _finished(epochs) or not _finished(batches):
            return False
        if int(batches["current"]["completed"]) < 1 or int(epochs["current"]["completed"]) < 1:
            return False
    except (KeyError, TypeError):
        return False  # a layout this rule does not know: left to Lightning
    for part in ("total", "current"):
        epochs[part]["processed"] -= 1
        epochs[part]["completed"] -= 1
        batches[part]["completed"] -= 1
    stepped = fit.get("epoch_loop.state_dict")
    if isinstance(stepped, dict) and isinstance(stepped.get("_batches_that_stepped"), int):
        # Lightning counts this batch once more when it completes it on restart.
        stepped["_batches_that_stepped"] -= 1
    if isinstance(checkpoint.get("epoch"), int):
        checkpoint["epoch"] -= 1
    return True
