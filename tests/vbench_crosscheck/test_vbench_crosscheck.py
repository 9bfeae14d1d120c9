"""Cross-check: rfvideo.eval vs VBench's own scoring functions (vbench 0.1.5) on the same mp4 files.

Runs only inside the isolated environment (``make vbench-env``; ``make test-vbench``):
    PYTHONPATH=src .venv-vbench/bin/python -m pytest -m vbench tests/vbench_crosscheck
Every dimension gets the same tiny random backbone on both sides; VBench's loaders (which download
weights) are bypassed by calling its scoring functions with the model object, or by building its
wrapper classes with ``__new__`` and setting the model. ``pyiqa`` (imported by VBench's imaging module
only for its MUSIQ class) is stubbed.

The fixture is built to expose preprocessing bugs: sharp-edged block textures and a fine checkerboard
(resize kernels differ most on edges), frame sizes that are not multiples of 8 (RAFT / AMT padding runs),
four frame rates read back from the files (dynamic degree's sampling interval), two videos per prompt,
and encoders that keep a 4x4 spatial grid instead of averaging the frame. Dynamic degree is compared per
frame pair (the flow magnitudes), not only as the 0/1 decision, and ``score_video_folder`` is compared
with ``VBench.evaluate`` on the same folder.

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
    score_video_folder,
    subject_consistency,
    temporal_flickering,
    temporal_style,
)
from rfvideo.eval.dynamic import pair_flow_scores  # noqa: E402

pytestmark = pytest.mark.vbench
TOL = 1e-5


def _write_mp4(path, frames, fps):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "12"}  # keep the texture's edges through H.264
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _video(gen, f, h, w, kind):
    """Sharp random blocks + a 2-px checkerboard band; "move" drifts, "still" holds, "flicker" blinks.

    Returns (f h w 3) uint8."""
    block = int(torch.randint(3, 9, (1,), generator=gen))
    cells = torch.rand(3, (h + 40) // block + 1, (w + 40) // block + 1, generator=gen)
    big = (cells > 0.5).float().repeat_interleave(block, 1).repeat_interleave(block, 2)[:, : h + 40, : w + 40]
    yy, xx = torch.meshgrid(torch.arange(h + 40), torch.arange(w + 40), indexing="ij")
    checker = ((yy // 2 + xx // 2) % 2).float()
    band = (yy % 37 < 6).float()
    big = big * (1 - band) + checker * band
    frames = []
    for t in range(f):
        dy, dx = {"move": (t % 20, (3 * t) % 40), "still": (0, 0), "flicker": (0, 0)}[kind]
        crop = big[:, dy : dy + h, dx : dx + w]
        if kind == "flicker":
            crop = crop * (0.85 + 0.15 * (t % 2))
        frames.append(0.1 + 0.8 * crop + 0.02 * torch.rand(3, h, w, generator=gen))
    v = torch.stack(frames).clamp(0, 1)
    return (v * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# name, frames, height, width, fps, kind. Sizes are not multiples of 8 except the big one (which tests
# imaging quality's long-side resize); decord2 3.4 fails on widths 16, 24, 48 and 72, avoided here.
SPECS = [
    ("a cat walking-0.mp4", 12, 58, 100, 16, "move"),
    ("a cat walking-1.mp4", 12, 58, 100, 16, "still"),
    ("a quiet lake-0.mp4", 17, 90, 132, 24, "move"),
    ("a quiet lake-1.mp4", 16, 100, 150, 30, "flicker"),
    ("a red car-0.mp4", 9, 130, 66, 8, "move"),
    ("a big scene-0.mp4", 5, 320, 576, 16, "move"),
]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Paths, our decord-decoded (f 3 h w) uint8 tensors and the fps read back from each file."""
    root = tmp_path_factory.mktemp("vbench_videos")
    gen = torch.Generator().manual_seed(0)
    paths = []
    for name, f, h, w, fps, kind in SPECS:
        p = root / name
        _write_mp4(p, _video(gen, f, h, w, kind), fps)
        paths.append(str(p))
    decoded = [read_video(p) for p in paths]
    rates = [r for _, r in decoded]
    assert sorted(set(round(r) for r in rates)) == [8, 16, 24, 30]
    return paths, [v for v, _ in decoded], rates


def test_fixture_decodes_like_vbench_s_readers(videos):
    import cv2

    paths, vids, _ = videos
    for p, v in zip(paths, vids):
        cap = cv2.VideoCapture(p)
        frames = []
        while True:
            ok, fr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
        # decord (ours) and OpenCV (VBench's flicker / flow / AMT readers) decode the same pixels
        assert np.array_equal(np.stack(frames), v.permute(0, 2, 3, 1).numpy()), p


class TinyImageEncoder(torch.nn.Module):
    """(n 3 h w) -> (n d): conv, ReLU, 4x4 grid pooling (keeps where things are), linear (any h, w)."""

    def __init__(self, d=32, seed=1):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 16, 5, stride=2)
        self.fc = torch.nn.Linear(16 * 16, d)

    def forward(self, x):
        grid = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4)
        return self.fc(grid.flatten(1))


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

    paths, vids, _ = videos
    avg, res = vb(paths)
    _close(temporal_flickering(vids), avg, res)


def test_subject_consistency(videos):
    from vbench.subject_consistency import subject_consistency as vb

    paths, vids, _ = videos
    model = TinyImageEncoder().eval()
    avg, res = vb(model, paths, "cpu", False)
    _close(subject_consistency(vids, model), avg, res)


def test_background_consistency(videos):
    from vbench.background_consistency import background_consistency as vb

    paths, vids, _ = videos
    clip_model = TinyCLIP().eval()
    with torch.no_grad():
        avg, res = vb(clip_model, None, paths, "cpu", False)
    _close(background_consistency(vids, clip_model.encode_image), avg, res)


def test_aesthetic_quality(videos):
    from vbench.aesthetic_quality import laion_aesthetic as vb

    paths, vids, _ = videos
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

    paths, vids, _ = videos
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

    paths, vids, rates = videos
    raft = TinyRAFT().eval()
    dd = DynamicDegree.__new__(DynamicDegree)  # skip load_model (it reads a checkpoint)
    dd.device, dd.model = "cpu", raft
    theirs_pairs = []
    check_move = dd.check_move

    def recording(score_list):  # VBench's per-pair top-5% magnitudes, before the 0/1 decision
        theirs_pairs.append(list(score_list))
        return check_move(score_list)

    dd.check_move = recording
    avg, res = vb(dd, paths)
    ours = dynamic_degree(vids, RAFTFlow(raft), fps=rates)
    assert set(raft.iters_seen) == {20}
    _close(ours, avg, res)
    for p, v, r, theirs in zip(paths, vids, rates, theirs_pairs):
        mine, _, _ = pair_flow_scores(v, RAFTFlow(raft), r)
        assert len(mine) == len(theirs), p  # same sampling interval from the same fps
        assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-6), p


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

    paths, vids, _ = videos
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

    paths, vids, _ = videos
    model = TinyCLIP().eval()
    styles = ["Van Gogh style", "oil painting", "Van Gogh style", "in cyberpunk style", "oil painting", "ink"]
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
    paths, vids, _ = videos
    model = TinyViCLIP().eval()
    from rfvideo.eval import prompt_from_filename

    prompts = [prompt_from_filename(p) for p in paths]
    video_dict = [  # VBench's grouping: one entry per prompt with its two videos
        {"prompt": q, "video_list": [p for p, pp in zip(paths, prompts) if pp == q]}
        for q in dict.fromkeys(prompts)
    ]
    avg, res = getattr(mod, dimension)(model, video_dict, None, "cpu")
    ours_fn = overall_consistency if dimension == "overall_consistency" else temporal_style
    _close(ours_fn(vids, prompts, model), avg, res)


def test_suite_file_names_are_the_ones_vbench_looks_up(tmp_path):
    from vbench import VBench

    from rfvideo.eval.aggregate import ALL_DIMENSIONS
    from rfvideo.eval.suite import FULL_INFO, packaged_suite_dir, suite_jobs

    folder = tmp_path / "videos"
    folder.mkdir()
    for j in suite_jobs(packaged_suite_dir()):
        (folder / j.filename).touch()
    bench = VBench("cpu", str(packaged_suite_dir() / FULL_INFO), str(tmp_path / "out"))
    info = bench.build_full_info_json(str(folder), "names", list(ALL_DIMENSIONS))
    import json

    entries = json.load(open(info))
    assert len(entries) == 946
    assert all(len(e["video_list"]) == 5 for e in entries), [
        e["prompt_en"] for e in entries if len(e["video_list"]) < 5
    ]


def test_score_video_folder_equals_vbench_evaluate(videos, tmp_path, monkeypatch):
    import json
    import shutil

    import clip
    from vbench import VBench
    from vbench.dynamic_degree import DynamicDegree

    paths, _, _ = videos
    folder = tmp_path / "videos"
    folder.mkdir()
    for p in paths:
        shutil.copy(p, folder)
    info = [
        {
            "prompt_en": "a cat walking",
            "dimension": ["subject_consistency", "dynamic_degree", "background_consistency"],
        },
        {"prompt_en": "a quiet lake", "dimension": ["temporal_flickering", "dynamic_degree"]},
        {"prompt_en": "a red car", "dimension": ["subject_consistency"]},
        {"prompt_en": "a big scene", "dimension": ["temporal_flickering", "background_consistency"]},
    ]
    (tmp_path / "info.json").write_text(json.dumps(info))
    dims = ["subject_consistency", "background_consistency", "temporal_flickering", "dynamic_degree"]
    dino, clip_model, raft = TinyImageEncoder().eval(), TinyCLIP().eval(), TinyRAFT().eval()

    # VBench's loaders download weights: hand them the same tiny models instead.
    fake = {"subject_consistency": {"read_frame": False}, "background_consistency": ["ViT-B/32", False],
            "temporal_flickering": [], "dynamic_degree": {"model": "unused"}}  # fmt: skip
    monkeypatch.setattr(vbench, "init_submodules", lambda dimension_list, local=False, read_frame=False: fake)
    monkeypatch.setattr(torch.hub, "load", lambda **kw: dino)
    monkeypatch.setattr(clip, "load", lambda *a, **k: (clip_model, None))

    def load_model(self):
        self.model = raft

    monkeypatch.setattr(DynamicDegree, "load_model", load_model)
    with torch.no_grad():
        VBench("cpu", str(tmp_path / "info.json"), str(tmp_path / "out")).evaluate(
            videos_path=str(folder), name="x", dimension_list=dims
        )
    theirs = json.loads((tmp_path / "out" / "x_eval_results.json").read_text())
    ours = score_video_folder(
        folder,
        dims,
        {"subject_consistency": dino, "background_consistency": clip_model.encode_image,
         "dynamic_degree": RAFTFlow(raft)},
        full_info=tmp_path / "info.json",
    )  # fmt: skip
    for d in dims:
        score, per_video = theirs[d]
        mine = ours["dimensions"][d]
        assert mine["score"] == pytest.approx(score, abs=TOL), d
        want = {r["video_path"].rsplit("/", 1)[-1]: float(r["video_results"]) for r in per_video}
        assert mine["per_video"] == pytest.approx(want, abs=TOL), d
