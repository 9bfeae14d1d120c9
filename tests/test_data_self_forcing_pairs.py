"""Self-Forcing's ODE-pair files (written here in their layout: one `{prompt: (1 s f c h w)}` per
`<index:05d>.pt`) as stage-1 data: the labellings, the shard conversion, and the ODE loss with the clean
state drawn per chunk as Self-Forcing draws it, against a naive per-frame reference.

Shapes: `b` batch, `s` states, `f` latent frames, `c` latent channels, `h w` latent size.
"""

from __future__ import annotations

import pytest
import torch

from rfvideo.data.self_forcing_pairs import (
    SelfForcingODEPairs,
    self_forcing_pair_timesteps,
    write_self_forcing_pair_shards,
)
from rfvideo.data.shards import ShardedTensorDataset
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import ODEInitModule

LATENT = (4, 4)


def _write_pairs(folder, n: int = 3, f: int = 2) -> list[tuple[str, torch.Tensor]]:
    folder.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        prompt = f"a red square moves {['left', 'right', 'up'][i % 3]}"
        states = torch.randn(1, 5, f, 4, *LATENT, generator=g)  # (1 s f c h w), noise -> clean
        torch.save({prompt: states}, folder / f"{i:05d}.pt")
        out.append((prompt, states[0]))
    return out


def test_labellings_are_their_schedules():
    """self-forcing: the 4-step shift-5 labels; exact: sigma = 8 s / (1 + 7 s) at s = 1 - i / 48."""
    assert self_forcing_pair_timesteps().tolist() == pytest.approx([1000, 937.5, 2500 / 3, 625, 0])
    exact = [1000.0] + [1000 * 8 * s / (1 + 7 * s) for s in (0.75, 0.5, 0.25)] + [0.0]
    assert self_forcing_pair_timesteps("exact").tolist() == pytest.approx(exact)
    assert exact[3] - 625 == pytest.approx(102.27, abs=0.01)  # the 0.10 in sigma the docstring names
    with pytest.raises(ValueError, match="labelling must be one of"):
        self_forcing_pair_timesteps("shift5")


def test_pair_files_read_and_convert_to_shards(tmp_path):
    pairs = _write_pairs(tmp_path / "pairs")
    ds = SelfForcingODEPairs(tmp_path / "pairs")
    assert len(ds) == 3
    for (prompt, states), sample in zip(pairs, ds, strict=True):
        assert sample["prompt"] == prompt and torch.equal(sample["trajectory"], states)
        assert torch.equal(sample["trajectory_timesteps"], self_forcing_pair_timesteps())
    write_self_forcing_pair_shards(tmp_path / "pairs", tmp_path / "shards", shard_size=2)
    shards = ShardedTensorDataset(tmp_path / "shards")
    assert shards.meta["labelling"] == "self-forcing" and len(shards) == 3
    for (prompt, states), i in zip(pairs, range(3), strict=True):
        assert shards[i]["prompt"] == prompt and torch.equal(shards[i]["trajectory"], states)
    (tmp_path / "bad").mkdir()
    torch.save({"a": torch.zeros(1, 4, 2, 4, 4)}, tmp_path / "bad" / "00000.pt")
    with pytest.raises(ValueError, match=r"states must be \(1 5 f c h w\)"):
        SelfForcingODEPairs(tmp_path / "bad")[0]
    torch.save({"a": torch.zeros(5, 2, 4, 4, 4), "b": torch.zeros(1)}, tmp_path / "bad" / "00000.pt")
    with pytest.raises(ValueError, match="one {prompt: states} entry"):
        SelfForcingODEPairs(tmp_path / "bad")[0]


def _module(draw_clean_state: bool) -> ODEInitModule:
    return ODEInitModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(),
        text_encoder=tiny_text_encoder(),
        num_latent_frames=4,
        latent_size=LATENT,
        draw_clean_state=draw_clean_state,
    )


def _batch(tmp_path, labelling: str = "self-forcing"):
    _write_pairs(tmp_path / "p", n=2, f=4)
    ds = SelfForcingODEPairs(tmp_path / "p", labelling=labelling)
    items = [ds[0], ds[1]]
    return {
        "prompt": [s["prompt"] for s in items],
        "trajectory": torch.stack([s["trajectory"] for s in items]),  # (b s f c h w)
        "trajectory_timesteps": items[0]["trajectory_timesteps"],
    }


def test_self_forcing_labelling_trains_and_exact_is_refused(tmp_path):
    module = _module(draw_clean_state=False)
    loss, _ = module.compute_loss(_batch(tmp_path), 0)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="do not contain timestep 937.50"):
        module.compute_loss(_batch(tmp_path, "exact"), 0)


def test_clean_state_draw_equals_naive_reference(tmp_path):
    """Per chunk the state is drawn over the 4 steps + the clean endpoint; chunks given the clean state
    run at t = 0 and their frames are left out of the average (Self-Forcing's ODE loss)."""
    module = _module(draw_clean_state=True)
    batch = _batch(tmp_path)
    ts = [*module.schedule.timesteps.tolist(), 0.0]
    for batch_idx in range(20):  # a draw with clean and noisy chunks both
        g = module.step_generator(batch_idx, per_rank=True, salt=1)
        j = torch.randint(0, 5, (2, 4), generator=g)  # (b f): chunks of one frame
        if (j == 4).any() and (j != 4).any():
            break
    loss, _ = module.compute_loss(batch, batch_idx)
    traj = batch["trajectory"]
    x_t = torch.stack([torch.stack([traj[b, j[b, i], i] for i in range(4)]) for b in range(2)])  # (b f c h w)
    t = torch.tensor([[ts[j[b, i]] for i in range(4)] for b in range(2)])
    emb = module.encode_prompts(batch["prompt"])
    v = module.generator(x_t.permute(0, 2, 1, 3, 4), t, emb, attention_mode="block_causal").permute(
        0, 2, 1, 3, 4
    )
    errs = [
        ((x_t[b, i] - t[b, i] / 1000 * v[b, i] - traj[b, -1, i]) ** 2).mean()
        for b in range(2)
        for i in range(4)
        if j[b, i] != 4
    ]
    torch.testing.assert_close(loss, torch.stack(errs).mean())
    # every chunk clean (one 4-frame chunk per sample): a zero loss that still backpropagates, where
    # Self-Forcing's mean over no frames would be NaN
    whole = ODEInitModule(
        generator=tiny_causal_wan(num_frames_per_chunk=4, seed=1, init_scale=0.1), vae=tiny_wan_vae(),
        text_encoder=tiny_text_encoder(), num_latent_frames=4, latent_size=LATENT, draw_clean_state=True,
    )  # fmt: skip
    idx = next(
        i
        for i in range(500)
        if (torch.randint(0, 5, (2, 1), generator=whole.step_generator(i, per_rank=True, salt=1)) == 4).all()
    )
    loss, _ = whole.compute_loss(batch, idx)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_rfvideo_convert_writes_pair_shards(tmp_path):
    from rfvideo.cli.app import main

    pairs = _write_pairs(tmp_path / "pairs")
    argv = ["convert", str(tmp_path / "pairs"), str(tmp_path / "s"), "--from", "self-forcing-pairs"]
    assert main([*argv, "--labelling", "exact"]) == 0
    shards = ShardedTensorDataset(tmp_path / "s")
    assert shards.meta["labelling"] == "exact" and shards[2]["prompt"] == pairs[2][0]
    assert torch.equal(shards[1]["trajectory_timesteps"], self_forcing_pair_timesteps("exact"))
    assert main(argv) == 2  # the output folder is not empty
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "t"), "--from", "self-forcing-pairs"]) == 2
