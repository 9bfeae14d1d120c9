"""A resumed run trains with the optimizer and scheduler settings it was given, not the checkpoint's.

Lightning restores the optimizer's `state_dict` on `fit --ckpt_path`, and with it every param group's
settings (lr, betas, weight decay, ...); a scheduler's restored state likewise replaces its settings
(`gamma`, `T_max`, `base_lrs`, ...). So `--model.init_args.optimizer.init_args.lr=0.05` on a resume was
silently ignored. `capture` records the settings as configured (before the restore); `reapply`, after
the restore, puts each changed setting back to its configured value and returns what changed, for one
warning. The moments and step counts (the optimizer's per-parameter state) and the scheduler's progress
are kept: only settings change.

With a scheduler a group's `lr` is the scheduled value, so the configured base lr is compared through
`initial_lr` (which schedulers store per group) and a change rescales the current lr by new / old base
(exact for multiplicative schedules such as StepLR, LambdaLR, cosine to zero).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ConfiguredSettings", "capture", "reapply"]

# Scheduler state that is progress, not a setting.
_PROGRESS_KEYS = frozenset(
    {
        "last_epoch",
        "_step_count",
        "_get_lr_called_within_step",
        "_last_lr",
        "_is_initial",
        "verbose",
        "base_lrs",
    }
)


@dataclass
class ConfiguredSettings:
    """Param-group settings (without `params`) and scheduler settings as the config built them."""

    groups: list[dict[str, Any]]
    scheduler: dict[str, Any] | None


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def capture(optimizer: torch.optim.Optimizer, scheduler: Any | None = None) -> ConfiguredSettings:
    """Record the optimizer's param-group settings and the scheduler's as built (before a restore)."""
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    sched = None
    if scheduler is not None and hasattr(scheduler, "state_dict"):
        sched = {k: copy.deepcopy(v) for k, v in scheduler.state_dict().items() if not callable(v)}
    return ConfiguredSettings(groups=groups, scheduler=sched)


def reapply(
    configured: ConfiguredSettings, optimizer: torch.optim.Optimizer, scheduler: Any | None = None
) -> list[tuple[str, Any, Any]]:
    """Put the configured settings back over the restored ones.

    Returns:
        `(name, restored value, configured value)` for every setting that differed (now the configured).

    Raises:
        ValueError: the optimizer has a different number of param groups than configured (its restored
            state belongs to another optimizer layout; names both counts).
    """
    if len(configured.groups) != len(optimizer.param_groups):
        raise ValueError(
            f"the checkpoint's optimizer has {len(optimizer.param_groups)} param groups, the configured one "
            f"{len(configured.groups)}: resume with the optimizer the run was trained with"
        )
    changes: list[tuple[str, Any, Any]] = []
    scheduled = scheduler is not None
    many = len(optimizer.param_groups) > 1
    for i, (want, group) in enumerate(zip(configured.groups, optimizer.param_groups, strict=True)):
        prefix = f"group {i} " if many else ""
        for key, value in want.items():
            if scheduled and key == "lr":
                continue  # the scheduled value; its base is `initial_lr`
            old = group.get(key)
            if _plain(old) == _plain(value):
                continue
            changes.append((prefix + key, _plain(old), _plain(value)))
            if key == "initial_lr" and isinstance(old, (int, float)) and old:
                group["lr"] = group["lr"] * (value / old)
            group[key] = copy.deepcopy(value)
    if scheduled:
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        for key, value in (configured.scheduler or {}).items():
            if key in _PROGRESS_KEYS or not hasattr(scheduler, key):
                continue
            old = getattr(scheduler, key)
            if _plain(old) == _plain(value):
                continue
            changes.append((f"scheduler {key}", _plain(old), _plain(value)))
            setattr(scheduler, key, copy.deepcopy(value))
    return changes
