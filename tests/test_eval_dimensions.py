"""rfvideo.eval dimension functions against hand-computed values and naive re-derivations of VBench's code."""

import math

import numpy as np
import pytest
import torch

from rfvideo.eval import (
    aesthetic_quality,
    appearance_style,
    background_consistency,
    dynamic_degree,
    imaging_quality,
    motion_smoothness,
    overall_consistency,
    subject_consistency,
    temporal_flickering,
    temporal_style,
)
from rfvideo.eval.dynamic import pad_to_multiple, sampling_interval, top5_flow_magnitude, video_is_dynamic
from rfvideo.eval.preprocess import (
    center_crop,
    clip_preprocess,
    dino_preprocess,
    middle_frame_indices,
    short_side_size,
)


def _rand_video(gen, f=5, h=32, w=40):
    return torch.rand(f, 3, h, w, generator=gen)


class FixedFeatures:
    """Feature 'extractor' that returns predetermined rows, one call per video, recording its inputs."""

    def __init__(self, rows):
        self.rows = [torch.tensor(r, dtype=torch.float32) for r in rows]
        self.inputs = []

    def __call__(self, x):
        self.inputs.append(x)
        return self.rows.pop(0)


def test_middle_frame_indices_hand_computed():
    # linspace(0, 33, 9) -> [0, 4, 8, 12, 16, 20, 24, 28, 33]; middles (a + b - 1) // 2
    assert middle_frame_indices(8, 33) == [1, 5, 9, 13, 17, 21, 25, 30]
    assert middle_frame_indices(8, 3) == [0, 1, 2, 2, 2, 2, 2, 2]  # padded with the last
    with pytest.raises(ValueError, match="num_frames"):
        middle_frame_indices(0, 5)


def test_resize_rules_and_crop():
    assert short_side_size(480, 832, 224) == (224, 388)  # int(224 * 832 / 480) = int(388.27)
    assert short_side_size(832, 480, 224) == (388, 224)
    x = torch.arange(2 * 3 * 5 * 8, dtype=torch.float32).reshape(2, 3, 5, 8)
    # torchvision centre crop: top = round((5 - 3) / 2) = 1, left = round((8 - 3) / 2) = round(2.5) = 2
    torch.testing.assert_close(center_crop(x, 3), x[..., 1:4, 2:5])


def test_preprocess_shapes_and_uint8_equivalence():
    gen = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (3, 3, 240, 320), generator=gen, dtype=torch.uint8)
    a = clip_preprocess(u8)
    b = clip_preprocess(u8.float() / 255)
    assert a.shape == (3, 3, 224, 224)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    d = dino_preprocess(u8)
    assert d.shape == (3, 3, 224, 298)  # no crop; int(224 * 320 / 240) = 298
    # identical size: no interpolation, only normalisation
    same = torch.rand(1, 3, 224, 224, generator=gen)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(dino_preprocess(same), (same - mean) / std, atol=1e-5, rtol=0)


def test_subject_consistency_hand_computed_frame_weighted():
    gen = torch.Generator().manual_seed(1)
    s = math.sqrt(0.5)
    feats = FixedFeatures([[[1, 0], [0, 1], [s, s]], [[1, 0], [-1, 0]]])
    videos = [_rand_video(gen, f=3), _rand_video(gen, f=2)]
    res = subject_consistency(videos, feats, batch_size=8)
    # video 0: t=1: cos(e2, e1) = 0 both -> 0; t=2: cos(e3, e2) = cos(e3, e1) = s -> s. Mean over 2.
    # video 1: cos = -1 -> clipped to 0.
    assert res.per_video == pytest.approx([s / 2, 0.0])
    assert res.aggregate == pytest.approx(s / 3)  # (0 + s + 0) / 3 compared frames, not mean of means
    assert res.weights == [2.0, 1.0]
    assert feats.inputs[0].shape == (3, 3, 224, 280)  # short side 224, no crop


def test_background_consistency_matches_naive_loop():
    gen = torch.Generator().manual_seed(2)
    proj = torch.randn(3, 16, generator=gen)

    def clip_image(x):  # (n 3 224 224) -> (n 16)
        return x.mean(dim=(2, 3)) @ proj + x[:, :, ::37, ::41].flatten(1)[:, :16]

    videos = torch.rand(2, 4, 3, 30, 50, generator=gen)
    res = background_consistency(videos, clip_image)
    total, cnt = 0.0, 0
    for v in videos:
        f = torch.nn.functional.normalize(clip_image(clip_preprocess(v)), dim=-1)
        for t in range(1, len(f)):
            total += (max(0.0, float(f[t] @ f[t - 1])) + max(0.0, float(f[t] @ f[0]))) / 2
            cnt += 1
    assert res.aggregate == pytest.approx(total / cnt, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        background_consistency(videos[:, :1], clip_image)


def test_temporal_flickering_hand_computed():
    v = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    v[1:] = 51  # MAEs: 51, 0 -> mean 25.5 -> (255 - 25.5) / 255 = 0.9
    w = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    res = temporal_flickering([v, w])
    assert res.per_video == pytest.approx([0.9, 1.0])
    assert res.aggregate == pytest.approx(0.95)
    with pytest.raises(ValueError, match="b f 3 h w"):
        temporal_flickering(torch.rand(3, 3, 4, 4))


def test_dynamic_degree_rules():
    assert [sampling_interval(f) for f in (8, 16, 24, 30, 4)] == [1, 2, 3, 4, 1]  # round(3.75) = 4
    flow = torch.zeros(1, 2, 10, 10)
    flow[0, 0, 0, :5] = 3.0  # magnitude 3 at 5 pixels, 0 elsewhere; top 5% of 100 = 5 values
    assert top5_flow_magnitude(flow) == pytest.approx(3.0)
    flow[0, 1, 0, :5] = 4.0  # magnitude 5
    assert top5_flow_magnitude(flow) == pytest.approx(5.0)
    # 64x64: threshold 1.5; 8 frames -> count_num = round(2.0) = 2; 2 frames -> round(0.5) = 0 (banker's)
    assert video_is_dynamic([2.0, 0.0, 2.0], 64, 64, 8)
    assert not video_is_dynamic([2.0, 0.0, 1.5], 64, 64, 8)
    assert video_is_dynamic([0.0], 64, 64, 2)
    assert not video_is_dynamic([], 64, 64, 1)
    x = torch.rand(1, 3, 60, 61)
    assert pad_to_multiple(x, 8).shape == (1, 3, 64, 64)


def test_dynamic_degree_end_to_end_with_recorded_calls():
    gen = torch.Generator().manual_seed(3)
    calls = []

    def flow(a, b):
        calls.append((a.shape, float(a.max())))
        mag = 2.0 if len(calls) % 2 else 0.5  # alternate moving / still pairs
        out = torch.zeros(1, 2, *a.shape[-2:])
        out[:, 0] = mag
        return out

    videos = torch.rand(2, 16, 3, 60, 64, generator=gen)
    res = dynamic_degree(videos, flow, fps=16)  # interval 2 -> 8 frames, 7 pairs, 4 moving >= 2
    assert res.per_video == [1.0, 1.0] and res.aggregate == 1.0
    assert calls[0][0] == (1, 3, 64, 64) and calls[0][1] > 1.0  # padded, 0..255 range
    assert len(calls) == 14
    still = dynamic_degree(videos[:1], lambda a, b: torch.zeros(1, 2, *a.shape[-2:]), fps=16)
    assert still.aggregate == 0.0


def test_motion_smoothness_matches_numpy_reference():
    gen = torch.Generator().manual_seed(4)
    videos = torch.randint(0, 256, (2, 6, 3, 20, 30), generator=gen, dtype=torch.uint8)

    def interp(a, b):  # averaging "model"; inputs are padded to multiples of 16
        assert a.shape[-2:] == (32, 32)
        return (a + b) / 2

    res = motion_smoothness(videos, interp)
    for v, got in zip(videos, res.per_video):
        frames = v.permute(0, 2, 3, 1).numpy()
        even = [f.astype(np.float32) / 255.0 for f in frames[0::2]]
        diffs = []
        for k in range(len(even) - 1):
            pred = ((even[k] + even[k + 1]) / 2 * 255.0).clip(0, 255).astype(np.uint8)
            diffs.append(np.mean(np.abs(pred.astype(np.int32) - frames[2 * k + 1].astype(np.int32))))
        assert got == pytest.approx((255.0 - np.mean(diffs)) / 255.0, abs=1e-6)
    # A model that predicts black: score = (255 - mean of the odd targets) / 255.
    zero = motion_smoothness(videos[:1], lambda a, b: torch.zeros_like(a))
    odd = videos[0, [1, 3]].double().mean().item()
    assert zero.aggregate == pytest.approx((255 - odd) / 255, abs=1e-9)
    with pytest.raises(ValueError, match="at least 3"):
        motion_smoothness(videos[:, :2], interp)


def test_aesthetic_quality_hand_computed():
    gen = torch.Generator().manual_seed(5)
    head = torch.nn.Linear(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 4.0]]))
        head.bias.fill_(1.0)
    const = lambda x: torch.tensor([[6.0, 8.0]]).expand(x.shape[0], 2)  # normalised: (0.6, 0.8)
    res = aesthetic_quality(torch.rand(2, 3, 3, 16, 16, generator=gen), const, head)
    assert res.per_video == pytest.approx([0.6, 0.6])  # (1.8 + 3.2 + 1) / 10


def test_imaging_quality_mean_and_resize_rule():
    gen = torch.Generator().manual_seed(6)
    seen = []

    def musiq(x):
        seen.append(tuple(x.shape))
        return x.mean() * 100

    small = torch.rand(2, 3, 20, 30, generator=gen)
    res = imaging_quality([small], musiq)
    assert res.aggregate == pytest.approx(small.mean().item(), abs=1e-6)
    imaging_quality([torch.rand(1, 3, 600, 300, generator=gen)], musiq)
    assert seen[-1] == (1, 3, 512, 256)  # long side to 512
    with pytest.raises(ValueError, match="mode"):
        imaging_quality([small], musiq, mode="bogus")


class TinyViCLIP:
    def __init__(self):
        self.vision_inputs = []

    def encode_vision(self, x, test=False):
        assert test
        self.vision_inputs.append(x)
        return torch.tensor([[3.0, 4.0]])

    def encode_text(self, text):
        return torch.tensor([[1.0, 0.0]]) if "cat" in text else torch.tensor([[0.0, 2.0]])


def test_overall_consistency_and_temporal_style_hand_computed():
    gen = torch.Generator().manual_seed(7)
    model = TinyViCLIP()
    vids = [torch.rand(33, 3, 24, 24, generator=gen), torch.rand(5, 3, 24, 24, generator=gen)]
    res = overall_consistency(vids, ["a cat", "a dog"], model)
    assert res.per_video == pytest.approx([0.6, 0.8])  # (0.6, 0.8) . (1, 0) and . (0, 1)
    assert res.aggregate == pytest.approx(0.7)
    assert model.vision_inputs[0].shape == (1, 8, 3, 224, 224)
    ts = temporal_style(vids[:1], "a cat", model)
    assert ts.dimension == "temporal_style" and ts.aggregate == pytest.approx(0.6)
    with pytest.raises(ValueError, match="prompts"):
        overall_consistency(vids, ["only one"], model)


def test_appearance_style_hand_computed_frame_weighted():
    gen = torch.Generator().manual_seed(8)
    frames = iter([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    image = lambda x: torch.tensor([next(frames) for _ in range(len(x))])
    text = lambda t: torch.tensor([[1.0, 0.0]])
    vids = [torch.rand(3, 3, 30, 20, generator=gen), torch.rand(1, 3, 30, 20, generator=gen)]
    res = appearance_style(vids, "oil painting", image, text, logit_scale=50.0)
    s = math.sqrt(0.5)
    # per frame: 50 * cos / 100
    assert res.per_video == pytest.approx([(0.5 + 0 + 0.5 * s) / 3, 0.5])
    assert res.aggregate == pytest.approx((0.5 + 0 + 0.5 * s + 0.5) / 4)
