"""Video IO (decord read, PyAV mp4 write) and the latent precompute: skips, report, resume, real VAE."""

from __future__ import annotations

import json

import av
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan

from helpers import randomize_
from rfvideo.data.precompute import precompute_latents
from rfvideo.data.shards import ShardedTensorDataset
from rfvideo.data.video_io import (
    VideoReadError,
    VideoTooShortError,
    frame_indices,
    read_video,
    resize_center_crop,
    write_video,
)
from rfvideo.models.vae import WanVAE


def smooth_video(frames: int, height: int, width: int, seed: int) -> torch.Tensor:
    """(F 3 H W) in [0, 1]: seeded low-frequency content, which H.264 keeps nearly exactly."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, 3, 4, generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)


class PoolEncoder:
    """Stand-in for WanVAE.encode: 4x causal temporal and 8x spatial average pooling, 4 channels."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls = 0
        self.fail_on_call = fail_on_call

    def encode(self, video: torch.Tensor) -> torch.Tensor:  # (b F 3 H W) -> (b 4 f h w), the VAE's layout
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # simulates the run being killed mid-way
        b, n, c, h, w = video.shape
        rest = video[:, 1:].reshape(b, (n - 1) // 4, 4, c, h, w).mean(2)
        x = torch.cat([video[:, :1], rest], dim=1)  # (b f 3 H W)
        x = F.avg_pool2d(x.flatten(0, 1), 8).unflatten(0, (b, -1))  # (b f 3 h w)
        return torch.cat([x, 2 * x[:, :, :1] - 1], dim=2).transpose(1, 2)


def test_write_read_round_trip(tmp_path):
    video = smooth_video(9, 32, 48, seed=0)  # 48 wide: decord2 fails on it, the PyAV fallback reads it
    path = write_video(tmp_path / "sub" / "clip.mp4", video, fps=8, crf=10)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert s.average_rate == 8
    back = read_video(path)
    assert back.shape == (9, 3, 32, 48) and back.dtype == torch.float32
    assert (back - video).abs().mean() < 0.02
    for shape in [(9, 3, 32, 64), (5, 3, 40, 56)]:  # decord's own path
        v = smooth_video(*shape[:1], *shape[2:], seed=1)
        assert (read_video(write_video(tmp_path / "b.mp4", v, fps=16, crf=10)) - v).abs().mean() < 0.02
    sub = read_video(path, num_frames=3, sampling="uniform", height=16, width=16)
    assert sub.shape == (3, 3, 16, 16)


def test_read_video_ignores_decord_bridge_and_falls_back_only_on_decord_errors(tmp_path, monkeypatch):
    import decord

    v = smooth_video(5, 32, 64, seed=2)
    path = write_video(tmp_path / "c.mp4", v, fps=8, crf=10)
    want = read_video(path)
    real_open = av.open

    def no_av(*a, **k):
        raise AssertionError("fell back to PyAV")

    monkeypatch.setattr(av, "open", no_av)
    decord.bridge.set_bridge("torch")  # VBench's ViCLIP reader leaves this set
    try:
        assert torch.equal(read_video(path), want)
    finally:
        decord.bridge.set_bridge("native")
    monkeypatch.setattr(av, "open", real_open)

    def broken(self, idx):
        raise MemoryError("not decord's stride bug")

    monkeypatch.setattr(decord.VideoReader, "get_batch", broken)
    with pytest.raises(MemoryError):
        read_video(path)  # only DECORDError means "try PyAV"


def test_frame_selection_and_crop():
    assert frame_indices(10, 4, "first") == [0, 1, 2, 3]
    assert frame_indices(10, 4, "uniform") == [0, 3, 6, 9]
    assert frame_indices(81, 81) == list(range(81))
    assert frame_indices(13, 9) == [0, 2, 3, 5, 6, 8, 9, 11, 12]  # i * 1.5, halves up
    with pytest.raises(VideoTooShortError, match="5 frames"):
        frame_indices(5, 9)
    g = torch.Generator().manual_seed(0)
    v = torch.rand(2, 3, 16, 32, generator=g)
    torch.testing.assert_close(resize_center_crop(v, 16, 16), v[..., 8:24], rtol=0, atol=0)
    torch.testing.assert_close(resize_center_crop(v, 16, 32), v, rtol=0, atol=0)
    # cover, not squash: 16x32 -> 8x8 scales by 1/2 to 8x16, then crops the middle 8 columns
    down = resize_center_crop(v, 8, 8)
    ref = F.interpolate(v, size=(8, 16), mode="bilinear", antialias=True)[..., 4:12]
    torch.testing.assert_close(down, ref)


def test_bad_files_and_arguments(tmp_path):
    with pytest.raises(VideoReadError, match="not found"):
        read_video(tmp_path / "nope.mp4")
    good = write_video(tmp_path / "good.mp4", smooth_video(5, 32, 32, seed=2), fps=8)
    (tmp_path / "bad.mp4").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    with pytest.raises(VideoReadError):
        read_video(tmp_path / "bad.mp4")
    with pytest.raises(VideoTooShortError):
        read_video(good, num_frames=9)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", torch.rand(2, 3, 15, 16), fps=8)


def _dataset_dir(tmp_path):
    """3 good clips with sidecar captions, a truncated one, a too-short one, one without a caption."""
    d = tmp_path / "videos"
    for i in range(3):
        write_video(d / f"good{i}.mp4", smooth_video(13, 40, 56, seed=10 + i), fps=8, crf=10)
        (d / f"good{i}.txt").write_text(f"caption {i}\n")
    data = (d / "good0.mp4").read_bytes()
    (d / "corrupt.mp4").write_bytes(data[: len(data) // 2])
    (d / "corrupt.txt").write_text("corrupt")
    write_video(d / "short.mp4", smooth_video(5, 40, 56, seed=20), fps=8)
    (d / "short.txt").write_text("short")
    write_video(d / "nocap.mp4", smooth_video(9, 40, 56, seed=21), fps=8)
    return d


def test_precompute_skips_bad_videos_and_reports(tmp_path):
    d = _dataset_dir(tmp_path)
    enc = PoolEncoder()
    out = tmp_path / "latents"
    report = precompute_latents(d, out, enc, num_frames=9, height=16, width=24, shard_size=2, progress=False)
    assert (report.num_videos, report.num_encoded, report.num_failed) == (6, 3, 3)
    reasons = {r["path"].split("/")[-1]: r["reason"] for r in report.failed}
    assert reasons == {"corrupt.mp4": "unreadable", "short.mp4": "too_short", "nocap.mp4": "no_prompt"}
    assert json.loads((out / "precompute_report.json").read_text())["num_failed"] == 3
    ds = ShardedTensorDataset(out)
    assert len(ds) == 3 and ds.meta["num_frames"] == 9
    for i in range(3):
        sample = ds[i]
        assert sample["prompt"] == f"caption {i}" and sample["path"].endswith(f"good{i}.mp4")
        clip = read_video(d / f"good{i}.mp4", num_frames=9, height=16, width=24)  # (F 3 H W)
        ref = PoolEncoder().encode(clip[None])[0].transpose(0, 1)  # (c f h w) -> the shards' (f c h w)
        assert sample["latents"].shape == (3, 4, 2, 3)
        torch.testing.assert_close(sample["latents"], ref, rtol=0, atol=0)
        # and the decoded clip is the written one (uniform: frames 0, 1.5, 3, ... -> 0, 2, 3, 5, ...)
        src = smooth_video(13, 40, 56, seed=10 + i)[frame_indices(13, 9)]
        assert (clip - resize_center_crop(src, 16, 24)).abs().mean() < 0.03


def test_interrupted_precompute_resumes_without_redoing_shards(tmp_path):
    d = _dataset_dir(tmp_path)
    out = tmp_path / "latents"
    kw = dict(num_frames=9, height=16, width=24, shard_size=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        precompute_latents(d, out, PoolEncoder(fail_on_call=3), **kw)  # good0, good1 done
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    assert len(first) == 2 and json.loads((out / "precompute_report.json").read_text())["num_encoded"] == 2
    enc = PoolEncoder()
    report = precompute_latents(d, out, enc, **kw)
    assert enc.calls == 1 and (report.num_resumed, report.num_encoded) == (2, 1)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors") if p.name in first} == first
    ds = ShardedTensorDataset(out)
    assert [ds[i]["prompt"] for i in range(len(ds))] == ["caption 0", "caption 1", "caption 2"]
    with pytest.raises(ValueError, match="height"):
        precompute_latents(d, out, enc, **{**kw, "height": 32})


def test_precompute_from_a_manifest(tmp_path):
    _dataset_dir(tmp_path)
    rows = [
        {"video": "videos/good1.mp4", "prompt": "from manifest"},
        {"video": "videos/nocap.mp4", "prompt": "x"},
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = precompute_latents(
        manifest, tmp_path / "lat", PoolEncoder(), num_frames=9, height=16, width=24, shard_size=8,
        progress=False,
    )  # fmt: skip
    assert (report.num_encoded, report.num_failed) == (2, 0)
    ds = ShardedTensorDataset(tmp_path / "lat")
    assert [ds[0]["prompt"], ds[1]["prompt"]] == ["from manifest", "x"]  # manifest beats the sidecar


def test_precompute_with_real_tiny_wan_vae(tmp_path):
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 0.8, 1.0, 2.0],
    )  # fmt: skip
    wan = WanVAE(randomize_(vae, torch.Generator().manual_seed(0), scale=0.2))
    d = tmp_path / "videos"
    write_video(d / "a.mp4", smooth_video(9, 24, 32, seed=3), fps=8, crf=10)
    report = precompute_latents(
        [d / "a.mp4"], tmp_path / "lat", wan, num_frames=5, height=16, width=16, shard_size=4,
        prompts={"a.mp4": "a tiny clip"}, progress=False,
    )  # fmt: skip
    assert report.num_encoded == 1 and report.num_failed == 0
    sample = ShardedTensorDataset(tmp_path / "lat")[0]
    clip = read_video(d / "a.mp4", num_frames=5, height=16, width=16)
    with torch.no_grad():
        ref = wan.encode(clip[None])[0].transpose(0, 1)  # (c f h w) -> (f c h w) = (2 4 2 2)
    assert sample["prompt"] == "a tiny clip" and sample["latents"].shape == (2, 4, 2, 2)
    torch.testing.assert_close(sample["latents"], ref)
