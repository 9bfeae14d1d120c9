"""RewardForcingModule under faults and bad input: NaN rewards skip by default and stop after too many in a
row, every frame policy scores exactly the frames it drew (against a full decode), the L2 anchor stays on
the parameter's device and FSDP2 sharding, running reward statistics train, and generate() rejects bad
counts and prompts with one ValueError naming the value.

Legend: `b` batch, `F` pixel frames, `H W` pixel size.
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from einops import rearrange

from rfvideo.demo.world.data import DemoPromptDataModule
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import RewardForcingModule
from rfvideo.modules.base import TooManySkippedStepsError
from rfvideo.rewards import FrameReward, FrameSelector, Reward, RewardEnsemble

PROMPTS = ["a red square moving left", "a blue square moving up"]


def _adam(params):
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.0, 0.999), weight_decay=0.01)


class _NaNOnCalls(Reward):
    """Mean pixel value, NaN for the whole batch on the calls whose number is in `nan_calls`."""

    name = "flaky"

    def __init__(self, nan_calls: set[int] | None = None) -> None:
        super().__init__()
        self.nan_calls = nan_calls
        self.calls = 0

    def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.calls += 1
        out = video.mean((1, 2, 3, 4))
        if self.nan_calls is None or self.calls in self.nan_calls:
            out = out * float("nan")
        return out


class _Spy(FrameReward):
    """Records the images it scores."""

    name = "spy"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.seen.append(images.detach().clone())
        return images.mean((1, 2, 3))


def _module(rewards: RewardEnsemble | None = None, **kw) -> RewardForcingModule:
    args = dict(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=rewards
        or RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}, FrameSelector(policy="last")),
        optimizer=_adam,
        num_latent_frames=2,
        latent_size=(4, 4),
        ema_decay=0.9,
    )
    args.update(kw)
    return RewardForcingModule(**args)


def _fit(module: RewardForcingModule, tmp_path, steps: int, max_epochs: int | None = None) -> L.Trainer:
    # Skipped steps do not count towards max_steps: a run that only skips needs max_epochs to end.
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, max_epochs=max_epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=8))
    return trainer


# ---------------------------------------------------------------------- item 1: NaN rewards
def test_nan_reward_skips_by_default_weights_ema_optimizer_untouched(tmp_path):
    ens = RewardEnsemble({"flaky": _NaNOnCalls()}, {"flaky": 1.0})  # shipped YAMLs leave on_nonfinite unset
    module = _module(ens, max_consecutive_skips=None)
    gen, ema = copy.deepcopy(module.generator.state_dict()), copy.deepcopy(module.generator_ema.state_dict())
    trainer = _fit(module, tmp_path, 3, max_epochs=1)  # one epoch = 4 batches, all skipped
    assert trainer.global_step == 0
    assert int(module.skipped_steps) == 4 and int(module.consecutive_skips) == 4
    for k, v in module.generator.state_dict().items():
        assert torch.equal(v, gen[k]), k
    for k, v in module.generator_ema.state_dict().items():
        assert torch.equal(v, ema[k]), k
    assert len(trainer.optimizers[0].state) == 0


def test_consecutive_skips_stop_with_a_clear_message_and_reset_on_a_good_step(tmp_path):
    ens = RewardEnsemble({"flaky": _NaNOnCalls()}, {"flaky": 1.0})
    with pytest.raises(
        TooManySkippedStepsError, match=r"3 optimizer steps in a row.*\['flaky'\] returned NaN"
    ):
        _fit(_module(ens, max_consecutive_skips=3), tmp_path, 10, max_epochs=1)
    # NaN on calls 1, 2, 4, 5: never 3 in a row, so training runs to the end
    alternating = RewardEnsemble({"flaky": _NaNOnCalls({1, 2, 4, 5})}, {"flaky": 1.0})
    module = _module(alternating, max_consecutive_skips=3)
    trainer = _fit(module, tmp_path / "b", 6)
    assert trainer.global_step == 6 and int(module.skipped_steps) == 4 and int(module.consecutive_skips) == 0


def test_an_explicit_raise_policy_still_stops_training(tmp_path):
    ens = RewardEnsemble({"flaky": _NaNOnCalls()}, {"flaky": 1.0}, on_nonfinite="raise")
    with pytest.raises(FloatingPointError, match="'flaky'"):
        _fit(_module(ens), tmp_path, 1, max_epochs=1)


def test_running_reward_statistics_update_during_training(tmp_path):
    ens = RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}, normalize={"c": "running"})
    module = _module(ens)
    _fit(module, tmp_path, 2)
    assert int(module.rewards.running_count_c) == 2
    assert not module.rewards.terms["c"].training  # the reward model itself stays frozen in eval


# ---------------------------------------------------------------------- item 2: frame policies
@pytest.mark.parametrize(
    "frames",
    [
        FrameSelector(policy="last"),
        FrameSelector(policy="last_chunk", k=3),
        FrameSelector(policy="strided", k=3),
        FrameSelector(policy="all"),
        FrameSelector(policy="random", k=2),
    ],
    ids=lambda s: f"{s.policy}{s.k}",
)
def test_every_frame_policy_scores_exactly_the_drawn_frames(frames):
    spy = _Spy()
    module = _module(RewardEnsemble({"spy": spy}, {"spy": 1.0}, frames), num_latent_frames=3)
    decoded: list[torch.Tensor] = []
    decode_last = module.vae.decode_last

    def recording_decode_last(latents, **kw):
        decoded.append(latents.detach().clone())
        return decode_last(latents, **kw)

    module.vae.decode_last = recording_decode_last
    # batch 2: the random draw is [1, 6]; drawing a second time over the decoded tail scored [2, 5]
    module.compute_loss({"prompt": PROMPTS}, batch_idx=2)
    num_pixel = 9  # 3 latent frames -> 1 + 4 * 2 pixel frames
    want_frames = frames.scored_frames(num_pixel, module.step_generator(2, per_rank=False, salt=5))
    full = module.vae.decode(decoded[0])  # (b F 3 H W), the whole clip decoded at once
    want = rearrange(full[:, want_frames], "b f c h w -> (b f) c h w")
    (seen,) = spy.seen
    assert seen.shape == want.shape
    torch.testing.assert_close(seen, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- item 6: the L2 anchor
def test_anchor_lives_on_the_parameter_device_and_equals_a_naive_penalty():
    module = _module(anchor_weight=0.5)
    init = [p.detach().clone() for p in module.generator.parameters()]
    with torch.no_grad():
        for i, p in enumerate(module.generator.parameters()):
            p.add_(0.01 * (i + 1))
    n = sum(p.numel() for p in init)
    naive = sum(((p.detach() - a) ** 2).sum() for p, a in zip(module.generator.parameters(), init)) / n
    torch.testing.assert_close(module.anchor_penalty(), naive)
    # built on the CPU, then the generator moves (as Lightning moves it to the GPU before the first step)
    module = _module(anchor_weight=0.5)
    module.generator.to("meta")
    module.anchor_penalty()
    placed = [id(a) for a in module._anchor]
    assert all(a.device.type == "meta" and a.dtype == torch.float32 for a in module._anchor)
    module.anchor_penalty()
    assert [id(a) for a in module._anchor] == placed  # moved once, not copied again at every step


def test_anchor_under_fsdp2_is_sharded_like_its_parameter(tmp_path):
    """One-process gloo mesh: the generator's parameters become DTensors; the anchor must follow."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    from rfvideo.distributed import shard_generator

    module = _module(anchor_weight=0.5)
    init = [p.detach().clone() for p in module.generator.parameters()]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        shard_generator(module.generator, init_device_mesh("cpu", (1,)), param_dtype=None)
        with torch.no_grad():
            for i, p in enumerate(module.generator.parameters()):
                p.add_(0.01 * (i + 1))
        penalty = module.anchor_penalty()
        for p, a in zip(module.generator.parameters(), module._anchor, strict=True):
            assert isinstance(p, DTensor) and isinstance(a, DTensor)
            assert a.placements == p.placements and a.device_mesh == p.device_mesh
        full = [p.full_tensor().detach() for p in module.generator.parameters()]
        n = sum(a.numel() for a in init)
        naive = sum(((p - a) ** 2).sum() for p, a in zip(full, init)) / n
        torch.testing.assert_close(penalty, naive)
        penalty.backward()  # differentiable through the shards
        assert all(p.grad is not None for p in module.generator.parameters())
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------- item 7: generate() input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_latent_frames": 0}, "num_latent_frames must be an int >= 1, got 0"),
        ({"num_latent_frames": -3}, "num_latent_frames must be an int >= 1, got -3"),
        ({"num_latent_frames": 2.7}, "num_latent_frames must be an int >= 1, got 2.7"),
        ({"num_latent_frames": True}, "num_latent_frames must be an int >= 1, got True"),
        ({"num_latent_frames": 3}, "multiple of the chunk size 2, got 3"),
        ({"prompts": "a red square"}, "prompts must be a list of str, got 'a red square'"),
        ({"prompts": ["a", 3]}, "prompts must be a list of str"),
        ({"seeds": [1.5]}, "seeds must be a list of int, got \\[1.5\\]"),
        ({"seeds": [1, 2]}, "got 1 prompts but 2 seeds"),
    ],
)
def test_generate_rejects_bad_input_naming_the_value(kwargs, match):
    module = _module(generator=tiny_causal_wan(num_frames_per_chunk=2, seed=1, init_scale=0.1))
    args = {"prompts": ["a red square"], "seeds": [0], **kwargs}
    prompts, seeds = args.pop("prompts"), args.pop("seeds")
    with pytest.raises(ValueError, match=match):
        module.generate(prompts, seeds=seeds, **args)
