"""The demo's VAE: the real `AutoencoderKLWan` at a tiny width, trained on the world's clips, behind `WanVAE`.

An untrained tiny Wan VAE decodes to grey, so the demo trains one first: reconstruction loss (mean squared
error in the VAE's [-1, 1] range) on freshly rendered clips of the training prompts, posterior mean (no KL
term: the generator sees normalised latents anyway, and the normalisation comes from the data as Wan's
`latents_mean` / `latents_std` do). Training clips have 5 frames (two latent frames): the decoder is causal,
so a longer clip decodes with the same first-frame and four-frame paths, cached.

The trained codec is saved as safetensors plus a JSON of its settings in a folder named by a hash of those
settings, so a rerun with the same settings loads it instead of training again.

Legend: `b` clips, `F` pixel frames, `f` latent frames, `c` latent channels, `H W` / `h w` pixel /
latent size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import save_file

from rfvideo.demo_world.components import tiny_wan_vae
from rfvideo.demo_world.world import ClipSpec, render_clip
from rfvideo.models.vae import WanVAE

__all__ = ["CodecSettings", "load_or_train_codec", "train_codec"]


@dataclass(frozen=True)
class CodecSettings:
    """Everything the trained codec depends on (its cache key)."""

    size: int = 32
    speed: float = 1.5
    z_dim: int = 8
    base_dim: int = 4
    steps: int = 400
    batch_size: int = 4
    lr: float = 3e-3
    clip_frames: int = 5
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _batch(specs: list[ClipSpec], s: CodecSettings, g: torch.Generator) -> torch.Tensor:
    """`(b F 3 H W)` clips of random training prompts and random seeds."""
    picks = torch.randint(0, len(specs), (s.batch_size,), generator=g).tolist()
    seeds = torch.randint(0, 2**31 - 1, (s.batch_size,), generator=g).tolist()
    return torch.stack(
        [
            render_clip(specs[i], num_frames=s.clip_frames, size=s.size, seed=sd, speed=s.speed)
            for i, sd in zip(picks, seeds, strict=True)
        ]
    )


def train_codec(
    specs: list[ClipSpec],
    settings: CodecSettings,
    *,
    progress: Callable[[int, float], None] | None = None,
) -> WanVAE:
    """Train a tiny Wan VAE on clips of `specs`; returns it frozen behind `WanVAE`, normalised from data.

    Args:
        specs: prompts whose clips it sees (the training split: held-out prompts stay unseen).
        settings: sizes, steps and seed.
        progress: called as `progress(step, loss)` after every step (a progress bar).
    """
    if not specs:
        raise ValueError("train_codec needs at least one clip spec")
    s = settings
    ae = tiny_wan_vae(z_dim=s.z_dim, base_dim=s.base_dim, seed=s.seed).vae
    ae.requires_grad_(True)
    ae.train()
    g = torch.Generator().manual_seed(s.seed)
    opt = torch.optim.Adam(ae.parameters(), lr=s.lr)
    for step in range(s.steps):
        x = rearrange(_batch(specs, s, g), "b F C H W -> b C F H W") * 2 - 1
        recon = ae.decode(ae.encode(x).latent_dist.mode()).sample
        loss = ((recon - x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step, float(loss.detach()))
    ae.eval()
    # Latent statistics of fresh clips, per channel: Wan's latents_mean / latents_std play this role.
    with torch.no_grad():
        stats = [
            ae.encode(rearrange(_batch(specs, s, g), "b F C H W -> b C F H W") * 2 - 1).latent_dist.mode()
            for _ in range(8)
        ]
    z = torch.cat(stats, 0)  # (b c f h w)
    mean, std = z.mean((0, 2, 3, 4)), z.std((0, 2, 3, 4))
    vae = tiny_wan_vae(
        z_dim=s.z_dim, base_dim=s.base_dim, latents_mean=mean.tolist(), latents_std=std.tolist()
    )
    vae.vae.load_state_dict(ae.state_dict())
    return vae


def load_or_train_codec(
    cache_root: str | Path,
    specs: list[ClipSpec],
    settings: CodecSettings,
    *,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[WanVAE, Path, bool]:
    """The codec for `settings` from `cache_root/codec-<key>/`, trained and saved there when missing.

    Returns:
        `(vae, folder, trained_now)`.
    """
    folder = Path(cache_root) / f"codec-{settings.key()}"
    weights, meta_path = folder / "vae.safetensors", folder / "settings.json"
    if weights.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("settings") == asdict(settings):
            vae = tiny_wan_vae(
                z_dim=settings.z_dim, base_dim=settings.base_dim, state_dict_path=str(weights),
                latents_mean=meta["latents_mean"], latents_std=meta["latents_std"],
            )  # fmt: skip
            return vae, folder, False
    vae = train_codec(specs, settings, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in vae.vae.state_dict().items()}, str(tmp))
    tmp.replace(weights)  # atomic: an interrupted save never leaves a half file under the final name
    meta = {
        "settings": asdict(settings),
        "latents_mean": vae.latents_mean.tolist(),
        "latents_std": vae.latents_std.tolist(),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return vae, folder, True
