"""The trained tiny Wan VAE codec: it trains (finite losses), sits behind `WanVAE`
with data-derived normalisation, and the settings-keyed cache returns the same codec without training."""

from __future__ import annotations

import pytest
import torch

from rfvideo.demo_world.codec_training import CodecSettings, load_or_train_codec
from rfvideo.demo_world.world import render_clip, split_specs
from rfvideo.models.vae import WanVAE


@pytest.mark.slow  # 8 min on the loaded 2-core machine (a Wan VAE forward/backward per step)
def test_codec_trains_caches_by_settings_and_reloads_identically(tmp_path):
    train, held = split_specs()
    settings = CodecSettings(size=16, z_dim=4, base_dim=4, steps=6, batch_size=1, lr=3e-3, clip_frames=5)
    losses: list[float] = []
    vae, folder, trained = load_or_train_codec(
        tmp_path, train, settings, progress=lambda i, x: losses.append(x)
    )
    assert trained and isinstance(vae, WanVAE) and folder.name == f"codec-{settings.key()}"
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    assert not torch.allclose(vae.latents_std, torch.ones(4))  # normalisation measured on clips, not 0 / 1
    again, _, trained_again = load_or_train_codec(tmp_path, train, settings)
    assert not trained_again
    clip = render_clip(held[0], num_frames=5, size=16, seed=0, speed=1.0)[None]
    with torch.no_grad():
        torch.testing.assert_close(again.decode(again.encode(clip)), vae.decode(vae.encode(clip)))
    # other settings -> another folder (no stale codec)
    assert CodecSettings(steps=7).key() != CodecSettings(steps=6).key()
