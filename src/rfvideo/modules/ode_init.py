"""Stage 1: ODE initialisation of the causal student (CausVid / Self-Forcing's, Reward-Forcing's stage 1).

For each chunk `k` a step index `j_k` is drawn uniformly from the few-step schedule; every latent frame of
the chunk is fed the ODE trajectory's state at `t_{j_k}` (per **chunk**, not per frame, because at
inference all frames of a chunk share one timestep). One block-causal forward predicts the flow `v`, and

    x0_hat = x_t - s v                (flow.py eq. 3, s = t / 1000)
    loss   = mean || x0_hat - x_0 ||^2

with `x_0` the trajectory's clean endpoint (t = 0).

`draw_clean_state=True` reproduces Self-Forcing's ODE loss: the state of each chunk is drawn uniformly over
the schedule's steps *and* the clean endpoint (probability 1 / (steps + 1), 0.2 with 4 steps); a chunk given
its clean state runs at t = 0 (the later chunks see it as clean context) and its frames are left out of the
loss average. Self-Forcing's own pair files: `rfvideo.data.self_forcing_pairs` (the `self-forcing` labelling).
Legend: `b` batch, `s` trajectory states, `f` latent frames, `c` latent channels, `h w` latent size,
`m` chunks, `k` frames per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange, repeat

from rfvideo.modules.base import VideoGeneratorModule
from rfvideo.modules.random_streams import Salt
from rfvideo.sampling import x0_from_flow

__all__ = ["ODEInitModule", "trajectory_step_indices"]


def trajectory_step_indices(
    trajectory_timesteps: torch.Tensor, schedule_timesteps: torch.Tensor
) -> list[int]:
    """Index in the trajectory of each schedule timestep, and last the index of t = 0.

    Raises:
        ValueError: a schedule timestep (or 0) is not among the trajectory's timesteps (tolerance 0.5).
    """
    tt = trajectory_timesteps.detach().float().cpu()
    out = []
    for t in [*schedule_timesteps.tolist(), 0.0]:
        d = (tt - t).abs()
        i = int(d.argmin())
        if float(d[i]) > 0.5:
            raise ValueError(
                f"trajectory timesteps {tt.tolist()} do not contain timestep {t:.2f} of the schedule; "
                "regenerate trajectories with return_timesteps = schedule timesteps + (0,)"
            )
        out.append(i)
    return out


class ODEInitModule(VideoGeneratorModule):
    """Regress the block-causal generator onto clean endpoints of bidirectional ODE trajectories.

    Batches carry `trajectory (b s f c h w)` and `trajectory_timesteps (s,)` (data.shards); see
    `VideoGeneratorModule` for the arguments.

    Args:
        draw_clean_state: Also draw the clean endpoint per chunk (Self-Forcing's ODE loss), those frames
            left out of the average (module docstring).
    """

    def __init__(self, *args: Any, draw_clean_state: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.draw_clean_state = bool(draw_clean_state)

    def compute_loss(self, batch: Mapping[str, Any], batch_idx: int) -> tuple[torch.Tensor, dict[str, Any]]:
        traj = batch["trajectory"]
        if traj.ndim != 6:
            raise ValueError(f"trajectory must be (b s f c h w), got shape {tuple(traj.shape)}")
        ts = batch["trajectory_timesteps"]
        if ts.ndim == 2:  # collated per sample: all rows are equal
            ts = ts[0]
        idx = trajectory_step_indices(ts, self.schedule.timesteps)
        steps, clean = idx[:-1], idx[-1]
        b, _, f = traj.shape[:3]
        k = int(self.generator.num_frames_per_chunk)
        if f % k != 0:
            raise ValueError(f"trajectory has f={f} latent frames, not a multiple of the chunk size {k}")
        m = f // k
        g = self.step_generator(batch_idx, per_rank=True, salt=Salt.ODE_STATE)
        choices = [*steps, clean] if self.draw_clean_state else steps
        j = torch.randint(0, len(choices), (b, m), generator=g)  # (b m) state per chunk
        j_frame = repeat(j, "b m -> b (m k)", k=k)  # (b f)
        traj = traj.to(self.device, self.param_dtype)
        sel = torch.tensor(choices)[j_frame].to(self.device)  # (b f) trajectory index per frame
        gather = sel.view(b, 1, f, 1, 1, 1).expand(b, 1, f, *traj.shape[3:])
        x_t = torch.gather(traj, 1, gather)[:, 0]  # (b f c h w)
        x_0 = traj[:, clean]  # (b f c h w)
        timesteps = self.schedule.timesteps.to(self.device)
        if self.draw_clean_state:
            timesteps = torch.cat([timesteps, timesteps.new_zeros(1)])
        t = timesteps[j_frame.to(self.device)]  # (b f)
        emb = self.encode_prompts(batch["prompt"], batch)
        x_t = rearrange(x_t, "b f c h w -> b c f h w")
        v = self.generator(x_t, t, emb, attention_mode="block_causal")
        sigma = rearrange(t / self.schedule.num_train_timesteps, "b f -> b 1 f 1 1")
        x0_hat = x0_from_flow(x_t.float(), v.float(), sigma)
        err = (x0_hat - rearrange(x_0, "b f c h w -> b c f h w").float()) ** 2  # (b c f h w)
        if not self.draw_clean_state:
            return torch.mean(err), {}
        noisy = rearrange(j_frame != len(steps), "b f -> b 1 f 1 1").to(err)  # frames left in the average
        count = noisy.sum() * err.shape[1] * err.shape[3] * err.shape[4]
        # a batch of clean chunks only gives a zero loss (Self-Forcing's empty mean would be NaN)
        return (err * noisy).sum() / count.clamp_min(1.0), {}
