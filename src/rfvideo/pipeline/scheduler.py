"""The few-step schedule as a diffusers-style, config-saved scheduler component of the pipeline.

The sampler itself is `rfvideo.sampling.sample_chunk` (flow matching, eq. 1 and 3 of `sampling/flow.py`);
this object only carries its numbers, so that `save_pretrained` writes them to `scheduler/
scheduler_config.json` and `from_pretrained` reads them back, as every diffusers pipeline stores its
scheduler. `schedule` is the `FlowMatchSchedule` the sampler takes.
"""

from __future__ import annotations

from collections.abc import Sequence

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from rfvideo.sampling.schedule import FlowMatchSchedule

__all__ = ["FewStepFlowScheduler"]


class FewStepFlowScheduler(SchedulerMixin, ConfigMixin):
    """Few-step flow-matching schedule: `denoising_steps` shifted by `shift` (Wan: 1000/750/500/250, shift 5).

    Args:
        num_train_timesteps: Timestep scale `T` (`t = T sigma`).
        shift: Timestep shift `k` (sigma' = k s / (1 + (k - 1) s)).
        denoising_steps: Unshifted timesteps of the steps, strictly decreasing from `num_train_timesteps`.
        sigma_lookup: "continuous" (`sigma = t / T`) or "table" (nearest entry of a sigma table: CausVid).
        sigma_table_size: Entries of the sigma table (read with "table" only).
        sigma_table_shift: Shift of the sigma table (read with "table" only).

    Raises:
        ValueError: the values `FlowMatchSchedule` refuses (checked at construction).
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 5.0,
        denoising_steps: Sequence[float] = (1000.0, 750.0, 500.0, 250.0),
        sigma_lookup: str = "continuous",
        sigma_table_size: int = 1000,
        sigma_table_shift: float = 8.0,
    ) -> None:
        # Built once here so a bad value fails at load, not at the first call.
        self._schedule = FlowMatchSchedule(
            num_train_timesteps=int(num_train_timesteps),
            shift=float(shift),
            denoising_steps=tuple(float(t) for t in denoising_steps),
            sigma_lookup=sigma_lookup,
            sigma_table_size=sigma_table_size,
            sigma_table_shift=float(sigma_table_shift),
        )

    @classmethod
    def from_schedule(cls, schedule: FlowMatchSchedule) -> FewStepFlowScheduler:
        """The scheduler carrying `schedule`'s numbers."""
        return cls(
            num_train_timesteps=schedule.num_train_timesteps,
            shift=float(schedule.shift),
            denoising_steps=[float(t) for t in schedule.denoising_steps],
            sigma_lookup=schedule.sigma_lookup,
            sigma_table_size=schedule.sigma_table_size,
            sigma_table_shift=float(schedule.sigma_table_shift),
        )

    @property
    def schedule(self) -> FlowMatchSchedule:
        """The `FlowMatchSchedule` the sampler takes."""
        return self._schedule

    @property
    def timesteps(self) -> list[float]:
        """Shifted timesteps of the steps, e.g. `[1000, 937.5, 833.3, 625]`."""
        return [float(t) for t in self._schedule.timesteps]
