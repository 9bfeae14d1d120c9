"""Stage-1 data from Self-Forcing's ODE-pair files, so that a user can start the ODE initialisation from the
pairs the field already has.

Self-Forcing's `scripts/generate_ode_pairs.py` runs the bidirectional Wan2.1 base from noise for 48 Euler
steps of a shift-8 flow schedule with CFG 6 (against its negative prompt), keeps the states at steps 0, 12,
24, 36 and the final latent, and writes one file per prompt, `<index:05d>.pt` = `{prompt: (1 s f c h w)}`
with `s = 5` states ordered from pure noise to clean (latents `(f c h w)` = (21, 16, 60, 104) there).

The kept states lie at sigma `shift8(1 - i / 48)` for i = 0, 12, 24, 36: **1.000, 0.960, 0.889, 0.727**,
then 0. Self-Forcing's ODE loss trains on them under the timesteps of its own 4-step shift-5 schedule,
**1000, 937.5, 833.3, 625** (sigma 1.000, 0.9375, 0.833, 0.625), i.e. with labels up to 0.10 apart in sigma
from the states' true noise levels. Two labellings (`LABELLINGS`) say which timesteps the states carry:

- `"self-forcing"`: (1000, 937.5, 833.33, 625, 0), Self-Forcing's labels. It approximates ODE regression
  on the shift-5 schedule: the student sees states that are *less* noisy than their label (by 0.023, 0.056,
  0.102 in sigma) and learns to map them to the clean endpoint, as Self-Forcing's checkpoints were trained.
  `ODEInitModule` accepts it with rfvideo's default schedule (its timesteps are exactly these).
- `"exact"`: (1000, 960.0, 888.9, 727.3, 0), the states' true noise levels; `ODEInitModule` refuses them
  unless its schedule has these timesteps (rfvideo integrates exactly through its own schedule).

Self-Forcing also draws, per chunk, the clean state with probability 1/5 (its index is drawn uniformly
over the 5 states) and leaves those frames out of the loss average: `ODEInitModule(draw_clean_state=True)`.

Legend: `s` states, `f` latent frames, `c` latent channels, `h w` latent height/width.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rfvideo.sampling.schedule import shift_sigma
from rfvideo.utils.checkpoint import load_checkpoint

__all__ = [
    "KEPT_STEPS",
    "LABELLINGS",
    "SelfForcingODEPairs",
    "self_forcing_pair_timesteps",
    "write_self_forcing_pair_shards",
]

KEPT_STEPS = (0, 12, 24, 36, 48)
"""Steps of the 48-step shift-8 run whose states a pair file keeps (the last is the clean latent)."""
_PAIR_STEPS, _PAIR_SHIFT = 48, 8.0
LABELLINGS = ("self-forcing", "exact")


def self_forcing_pair_timesteps(labelling: str = "self-forcing") -> torch.Tensor:
    """Timesteps `(s,)` (float32, in [0, 1000]) that the pair files' 5 states carry under `labelling`."""
    if labelling == "self-forcing":
        # the 4-step schedule (1000, 750, 500, 250) under shift 5, then the clean state
        sig = [float(shift_sigma(t / 1000.0, 5.0)) for t in (1000, 750, 500, 250)] + [0.0]
    elif labelling == "exact":
        sig = [float(shift_sigma(1.0 - i / _PAIR_STEPS, _PAIR_SHIFT)) for i in KEPT_STEPS]
    else:
        raise ValueError(f"labelling must be one of {LABELLINGS}, got {labelling!r}")
    return torch.tensor(sig, dtype=torch.float64).mul(1000.0).float()


def _read_pair(path: Path) -> tuple[str, torch.Tensor]:
    """(prompt, states `(s f c h w)`) of one pair file."""
    data = load_checkpoint(path)
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError(f"{path}: a Self-Forcing pair file holds one {{prompt: states}} entry")
    prompt, states = next(iter(data.items()))
    if not isinstance(prompt, str) or not isinstance(states, torch.Tensor):
        raise ValueError(
            f"{path}: expected {{str: tensor}}, got {{{type(prompt).__name__}: {type(states).__name__}}}"
        )
    if states.ndim == 6 and states.shape[0] == 1:
        states = states[0]
    if states.ndim != 5 or states.shape[0] != len(KEPT_STEPS):
        raise ValueError(
            f"{path}: states must be (1 {len(KEPT_STEPS)} f c h w) (noise to clean), "
            f"got {tuple(states.shape)}"
        )
    return prompt, states


class SelfForcingODEPairs(torch.utils.data.Dataset):
    """Map-style dataset over a folder of Self-Forcing ODE-pair files (`*.pt`, sorted by name).

    Each sample: `{"prompt": str, "trajectory": (s f c h w), "trajectory_timesteps": (s,)}`, the batch
    fields `ODEInitModule` reads (states from noise to clean; timesteps per `labelling`).

    Args:
        directory: The folder of pair files.
        labelling: `"self-forcing"` (their training labels) or `"exact"` (module docstring).
    """

    def __init__(self, directory: str | os.PathLike[str], *, labelling: str = "self-forcing") -> None:
        self.timesteps = self_forcing_pair_timesteps(labelling)
        self.labelling = labelling
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError(f"pair directory {str(self.directory)!r} does not exist")
        self.files = sorted(self.directory.glob("*.pt"))
        if not self.files:
            raise ValueError(f"no *.pt pair files in {str(self.directory)!r}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        prompt, states = _read_pair(self.files[index])
        return {"prompt": prompt, "trajectory": states, "trajectory_timesteps": self.timesteps.clone()}


def write_self_forcing_pair_shards(
    directory: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    labelling: str = "self-forcing",
    shard_size: int = 64,
    dtype: torch.dtype | None = None,
) -> Path:
    """Convert a folder of pair files into `data.ShardWriter` shards (`RFVideoDataModule(train_shards=...)`).

    Args:
        directory: The folder of Self-Forcing pair files.
        out_dir: The shard directory (a re-run skips finished shards).
        labelling: See the module docstring; recorded in the shard index.
        shard_size: Samples per shard.
        dtype: Cast the states (None: keep the files' dtype).
    """
    from rfvideo.data.shards import ShardWriter

    pairs = SelfForcingODEPairs(directory, labelling=labelling)
    meta = {"kind": "ode_trajectories", "source": "self-forcing-ode-pairs", "labelling": labelling}
    with ShardWriter(out_dir, shard_size=shard_size, meta=meta) as writer:
        for i, path in enumerate(pairs.files):
            sample = pairs[i]
            if dtype is not None:
                sample["trajectory"] = sample["trajectory"].to(dtype)
            writer.add(sample, key=f"{path.name}:{sample['prompt']}")
    return Path(out_dir)
