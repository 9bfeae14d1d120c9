"""Cross-check: rfvideo.eval vs VBench's own scoring functions (vbench 0.1.5) on the same mp4 files.

Runs only inside the isolated environment (``make vbench-env``; ``make test-vbench``):
    PYTHONPATH=src .venv-vbench/bin/python -m pytest -m vbench tests/vbench_crosscheck
Every dimension gets the same tiny random backbone on both sides; VBench's loaders (which download
weights) are bypassed by calling its scoring functions with the model object, or by building its
wrapper classes with ``__new__`` and setting the model. ``pyiqa`` (imported by VBench's imaging module
only for its MUSIQ class) is stubbed.

Shape legend: f frames, h/w height/width, d feature width, t sampled frames.
"""

import sys
import types

import numpy as np
import pytest
import torch

vbench = pytest.importorskip("vbench", reason="needs the isolated VBench environment (make vbench-env)")
av = pytest.importorskip("av")

from rfvideo.eval import (  # noqa: E402
    AMTInterpolator,
    RAFTFlow,
    aesthetic_quality,
    appearance_style,
    background_consistency,
    dynamic_degree,
    imaging_quality,
    motion_smoothness,
    overall_consistency,
    read_video,
    subject_consistency,
    temporal_flickering,
    temporal_style,
)

pytestmark = pytest.mark.vbench
TOL = 1e-4
FPS = 16


def _write_mp4(path, frames, fps=FPS):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _video(gen, f, h, w, motion):
    """A smooth random picture that drifts (motion=True) or stays put with slight flicker."""
    base = torch.rand(1, 3, h // 8 + 4, w // 8 + 4, generator=gen)
    big = torch.nn.functional.interpolate(base, size=(h + 32, w + 32), mode="bicubic").clamp(0, 1)
    frames = []
    for t in range(f):
        dy, dx = (2 * t, 3 * t) if motion else (0, 0)
        crop = big[0, :, dy % 32 : dy % 32 + h, dx % 32 : dx % 32 + w]
        frames.append(crop + 0.02 * torch.rand(3, h, w, generator=gen))
    v = torch.stack(frames).clamp(0, 1)
    return (v * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Widths are multiples of 64: decord2 3.4 fails on other widths (VBench's readers too).

    Paths and our decord-decoded (f 3 h w) uint8 tensors of four mp4s, one larger than 512 px."""
    root = tmp_path_factory.mktemp("vbench_videos")
    gen = torch.Generator().manual_seed(0)
    specs = [
        ("a cat walking-0.mp4", 12, 64, 128, True),
        ("a cat walking-1.mp4", 12, 64, 128, False),
        ("a quiet lake-0.mp4", 9, 128, 64, True),
        ("a big scene-0.mp4", 5, 320, 576, True),
    ]
    paths = []
    for name, f, h, w, motion in specs:
        p = root / name
        _write_mp4(p, _video(gen, f, h, w, motion))
        paths.append(str(p))
    return paths, [read_video(p)[0] for p in paths]


class TinyImageEncoder(torch.nn.Module):
    """(n 3 h w) -> (n d): conv, ReLU, global pool, linear (any h, w)."""

    def __init__(self, d=32, seed=1):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 16, 7, stride=4)
        self.fc = torch.nn.Linear(16, d)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class TinyCLIP(torch.nn.Module):
    """The parts of OpenAI CLIP that VBench calls: encode_image, encode_text(tokens), forward, logit_scale."""

    def __init__(self, d=32):
        super().__init__()
        self.visual = TinyImageEncoder(d, seed=2)
        torch.manual_seed(3)
        self.token_embedding = torch.nn.Embedding(49408, d)
        self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(57.0), dtype=torch.float32))

    def encode_image(self, x):
        return self.visual(x)

    def encode_text(self, tokens):
        return self.token_embedding(tokens).mean(dim=1)

    def forward(self, image, text):
        i = self.encode_image(image)
        t = self.encode_text(text)
        i = i / i.norm(dim=1, keepdim=True)
        t = t / t.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * i @ t.t()
        return logits_per_image, logits_per_image.t()


class TinyViCLIP(torch.nn.Module):
    """ViCLIP's calls as VBench makes them: encode_vision((1 t 3 h w), test=True), encode_text(str)."""

    def __init__(self, d=24):
        super().__init__()
        self.frame = TinyImageEncoder(d, seed=4)
        torch.manual_seed(5)
        self.chars = torch.nn.Embedding(256, d)

    def encode_vision(self, x, test=False):
        b, t = x.shape[:2]
        f = self.frame(x.flatten(0, 1)).view(b, t, -1)
        return f.mean(dim=1) + 0.5 * f[:, 0]

    def encode_text(self, text):
        ids = torch.tensor([min(ord(c), 255) for c in text])
        return self.chars(ids).mean(dim=0, keepdim=True)


def _close(ours, theirs_avg, theirs_per_video, key="video_results"):
    assert ours.aggregate == pytest.approx(float(theirs_avg), abs=TOL)
    assert ours.per_video == pytest.approx([float(r[key]) for r in theirs_per_video], abs=TOL)


def test_temporal_flickering(videos):
    from vbench.temporal_flickering import temporal_flickering as vb

    paths, vids = videos
    avg, res = vb(paths)
    _close(temporal_flickering(vids), avg, res)


def test_subject_consistency(videos):
    from vbench.subject_consistency import subject_consistency as vb

    paths, vids = videos
    model = TinyImageEncoder().eval()
    avg, res = vb(model, paths, "cpu", False)
    _close(subject_consistency(vids, model), avg, res)


def test_background_consistency(videos):
    from vbench.background_consistency import background_consistency as vb

    paths, vids = videos
    clip_model = TinyCLIP().eval()
    with torch.no_grad():
        avg, res = vb(clip_model, None, paths, "cpu", False)
    _close(background_consistency(vids, clip_model.encode_image), avg, res)


def test_aesthetic_quality(videos):
    from vbench.aesthetic_quality import laion_aesthetic as vb

    paths, vids = videos
    clip_model = TinyCLIP().eval()
    torch.manual_seed(6)
    head = torch.nn.Linear(32, 1).eval()
    avg, res = vb(head, clip_model, paths, "cpu")
    _close(aesthetic_quality(vids, clip_model.encode_image, head), avg, res)


def test_imaging_quality(videos, monkeypatch):
    # vbench.imaging_quality imports pyiqa's MUSIQ class at module level; we pass our own model.
    stub = types.ModuleType("pyiqa.archs.musiq_arch")
    stub.MUSIQ = object
    for name in ("pyiqa", "pyiqa.archs"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "pyiqa.archs.musiq_arch", stub)
    monkeypatch.delitem(sys.modules, "vbench.imaging_quality", raising=False)
    from vbench.imaging_quality import technical_quality as vb

    paths, vids = videos
    enc = TinyImageEncoder(d=1, seed=7).eval()
    seen = []

    def musiq(x):
        seen.append(tuple(x.shape[-2:]))
        return 50 + 40 * torch.tanh(enc(x))

    avg, res = vb(musiq, paths, "cpu")
    assert (284, 512) in seen  # the 320x576 video was resized: long side 512
    ours = imaging_quality(vids, musiq)
    assert ours.aggregate == pytest.approx(avg, abs=TOL)
    # VBench keeps per-video MUSIQ scores on 0..100; ours are / 100.
    assert [100 * s for s in ours.per_video] == pytest.approx(
        [r["video_results"] for r in res], abs=100 * TOL
    )


class TinyRAFT(torch.nn.Module):
    """Original RAFT call signature: model(image1, image2, iters=20, test_mode=True) -> (low, up)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.conv = torch.nn.Conv2d(6, 2, 3, padding=1)
        self.iters_seen = []

    def forward(self, image1, image2, iters=12, test_mode=False):
        self.iters_seen.append(iters)
        flow = 0.2 * self.conv(torch.cat([image1 / 255, (image2 - image1) / 8], dim=1))
        return flow[..., ::8, ::8], flow


def test_dynamic_degree(videos):
    from vbench.dynamic_degree import DynamicDegree
    from vbench.dynamic_degree import dynamic_degree as vb

    paths, vids = videos
    raft = TinyRAFT().eval()
    dd = DynamicDegree.__new__(DynamicDegree)  # skip load_model (it reads a checkpoint)
    dd.device, dd.model = "cpu", raft
    avg, res = vb(dd, paths)
    ours = dynamic_degree(vids, RAFTFlow(raft), fps=FPS)
    assert set(raft.iters_seen) == {20}
    _close(ours, avg, res)
    assert 0.0 < ours.aggregate < 1.0, "fixture should hold both dynamic and static videos"


class TinyAMT(torch.nn.Module):
    """AMT's call signature: model(img0, img1, embt, scale_factor=..., eval=True) -> {'imgt_pred': ...}."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.conv = torch.nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, img0, img1, embt, scale_factor=1.0, eval=False):
        mid = (1 - embt) * img0 + embt * img1
        return {"imgt_pred": (mid + 0.05 * torch.tanh(self.conv(torch.cat([img0, img1], 1)))).clamp(0, 1)}


def test_motion_smoothness(videos):
    from vbench.motion_smoothness import MotionSmoothness
    from vbench.motion_smoothness import motion_smoothness as vb

    paths, vids = videos
    amt = TinyAMT().eval()
    ms = MotionSmoothness.__new__(MotionSmoothness)  # skip load_model (it reads a checkpoint)
    ms.device, ms.niters = "cpu", 1
    ms.initialization()
    ms.model = amt
    avg, res = vb(ms, paths)
    _close(motion_smoothness(vids, AMTInterpolator(amt)), avg, res)


def test_appearance_style(videos):
    import clip
    from vbench.appearance_style import appearance_style as vb

    paths, vids = videos
    model = TinyCLIP().eval()
    styles = ["Van Gogh style", "oil painting", "Van Gogh style", "in cyberpunk style"]
    video_dict = [
        {"prompt": f"p{i}", "video_list": [p], "auxiliary_info": {"appearance_style": s}}
        for i, (p, s) in enumerate(zip(paths, styles))
    ]
    avg, res = vb(model, video_dict, "cpu")
    ours = appearance_style(
        vids,
        styles,
        model.encode_image,
        lambda texts: model.encode_text(clip.tokenize(texts)),
        logit_scale=float(model.logit_scale.exp()),
    )
    _close(ours, avg, res)


@pytest.mark.parametrize("dimension", ["overall_consistency", "temporal_style"])
def test_viclip_dimensions(videos, dimension):
    import importlib

    mod = importlib.import_module(f"vbench.{dimension}")
    # VBench caches text features in a mutable default argument shared across calls: start clean.
    mod.get_text_features.__defaults__[0].clear()
    paths, vids = videos
    model = TinyViCLIP().eval()
    prompts = ["a cat walking", "a cat walking", "a quiet lake", "a big scene"]
    video_dict = [{"prompt": "a cat walking", "video_list": paths[:2]}] + [
        {"prompt": p, "video_list": [v]} for p, v in zip(prompts[2:], paths[2:])
    ]
    avg, res = getattr(mod, dimension)(model, video_dict, None, "cpu")
    ours_fn = overall_consistency if dimension == "overall_consistency" else temporal_style
    _close(ours_fn(vids, prompts, model), avg, res)
