"""Dimension registry, per-video streamed folder scoring, and the fixes found while measuring (issue 12 #4).

References: direct calls of the dimension functions, VBench's numpy ``get_score`` (written out here),
decord's own output under the native bridge, and invariants. Shape legend: f frames, h/w height/width.
"""

import gc
import warnings
import weakref

import numpy as np
import pytest
import torch

import rfvideo.eval.folder as folder_mod
from rfvideo.data.video_io import write_video
from rfvideo.eval import (
    IMPLEMENTED_DIMENSIONS,
    load_backbones,
    score_dimension,
    score_video_folder,
    temporal_flickering,
)
from rfvideo.eval.aggregate import ALL_DIMENSIONS
from rfvideo.eval.dynamic import dynamic_degree, top5_flow_magnitude
from rfvideo.eval.preprocess import to_255
from rfvideo.eval.registry import REGISTRY, Dimension, LoadContext, get_dimension, register
from rfvideo.eval.result import DimensionScore


def _texture(gen, f=6, h=24, w=40):
    """Sharp-edged blocks that move one pixel per frame, plus noise: (f 3 h w) float in [0, 1]."""
    base = (torch.rand(3, h // 4, w // 4 + 2, generator=gen) > 0.5).float()
    big = base.repeat_interleave(4, 1).repeat_interleave(4, 2)
    return torch.stack([big[:, :, t : t + w] for t in range(f)]).clamp(0, 1) * 0.8 + 0.1


def test_registry_holds_all_16_dimensions_with_metadata():
    assert set(REGISTRY) == set(ALL_DIMENSIONS)
    assert set(IMPLEMENTED_DIMENSIONS) == {d for d, e in REGISTRY.items() if e.in_loop}
    assert len(IMPLEMENTED_DIMENSIONS) == 10
    assert get_dimension("temporal flickering").load is None
    assert get_dimension("scene").group == "semantic" and not get_dimension("scene").in_loop
    with pytest.raises(ValueError, match=r"'color' is not implemented in rfvideo \(GRiT detector\)"):
        score_dimension("color", torch.rand(1, 2, 3, 8, 8), None)


def test_one_registration_adds_a_dimension_everywhere(tmp_path, monkeypatch):
    # Replace scene's official-only entry with a scorer: score_dimension and score_video_folder use it.
    def mean_brightness(videos, backbone, ctx):
        per = [float(to_255(v).mean()) / 255 * backbone for v in videos]
        return DimensionScore("scene", per, sum(per) / len(per))

    monkeypatch.setitem(REGISTRY, "scene", REGISTRY["scene"])
    register(Dimension("scene", "test", "none", mean_brightness, lambda spec, ctx: float(spec), needs=()))
    g = torch.Generator().manual_seed(0)
    v = _texture(g)
    assert score_dimension("scene", [v], 2.0).aggregate == pytest.approx(2 * float(v.mean()))
    write_video(tmp_path / "a cat-0.mp4", v, fps=8)
    backbones = load_backbones({"scene": "0.5"})
    assert backbones == {"scene": 0.5}
    out = score_video_folder(tmp_path, ["scene"], backbones)
    # the mp4 round trip (H.264, uint8) moves the mean a little
    assert out["dimensions"]["scene"]["score"] == pytest.approx(0.5 * float(v.mean()), abs=0.01)


def test_precision_vbench_is_fp16_clip_on_cuda_only():
    assert LoadContext("cpu", "vbench").clip_dtype == torch.float32
    assert LoadContext("cuda", "vbench").clip_dtype == torch.float16
    assert LoadContext("cuda", "fp32").clip_dtype == torch.float32
    with pytest.raises(ValueError, match="'fp16'"):
        LoadContext("cpu", "fp16")


def test_hfclip_fp16_matches_fp32(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    from rfvideo.eval.backbones import HFCLIP

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                     "num_attention_heads": 2},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 224, "patch_size": 32},
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(cfg).save_pretrained(tmp_path)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    full = HFCLIP.__new__(HFCLIP)
    half = HFCLIP.__new__(HFCLIP)
    for obj, dt in ((full, torch.float32), (half, torch.float16)):
        obj.model = CLIPModel.from_pretrained(tmp_path).to(dtype=dt).eval()
        obj.device, obj.dtype = "cpu", dt
    a, b = full.image(x), half.image(x)
    assert b.dtype == torch.float16
    torch.testing.assert_close(b.float(), a, atol=2e-2, rtol=2e-2)


def test_folder_scoring_streams_one_video_at_a_time(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(2)
    for i in range(4):
        write_video(tmp_path / f"a dog-{i}.mp4", _texture(g, f=5 + i), fps=8)
    live: list[weakref.ref] = []
    real = folder_mod.read_video

    def tracked(path):
        gc.collect()
        assert all(r() is None for r in live), "a previous video is still in memory"
        video, fps = real(path)
        live.append(weakref.ref(video))
        return video, fps

    monkeypatch.setattr(folder_mod, "read_video", tracked)
    out = score_video_folder(tmp_path, ["temporal_flickering"], {})
    assert len(live) == 4
    monkeypatch.setattr(folder_mod, "read_video", real)
    vids = [real(tmp_path / f"a dog-{i}.mp4")[0] for i in range(4)]
    direct = temporal_flickering(vids)
    assert out["dimensions"]["temporal_flickering"]["score"] == pytest.approx(direct.aggregate, abs=1e-12)


def test_full_info_restricts_each_dimension_to_its_prompts_and_indices(tmp_path):
    import json

    info = [
        {"prompt_en": "a still cup", "dimension": ["temporal_flickering"]},
        {"prompt_en": "a running dog", "dimension": ["subject_consistency"]},
    ]
    (tmp_path / "info.json").write_text(json.dumps(info))
    vids = tmp_path / "v"
    g = torch.Generator().manual_seed(3)
    for name in ("a still cup-0", "a still cup-5", "a running dog-0", "other-0"):
        write_video(vids / f"{name}.mp4", _texture(g), fps=8)
    out = score_video_folder(vids, ["temporal_flickering"], {}, full_info=tmp_path / "info.json")
    # Index 5 is outside VBench's 0-4; the dog and "other" are not temporal-flickering prompts.
    assert list(out["dimensions"]["temporal_flickering"]["per_video"]) == ["a still cup-0.mp4"]


def _vbench_get_score(flow):
    """VBench 0.1.5 DynamicDegree.get_score on a (1 2 h w) flow, in numpy."""
    flo = flow[0].permute(1, 2, 0).numpy()
    rad = np.sqrt(np.square(flo[:, :, 0]) + np.square(flo[:, :, 1]))
    h, w = rad.shape
    cut = int(h * w * 0.05)
    return float(np.mean(abs(np.sort(-rad.flatten()))[:cut]))


@pytest.mark.parametrize("nan_fraction", [0.0, 0.3, 0.94, 0.97, 1.0])
def test_top5_with_nan_flow_matches_numpy_sort(nan_fraction):
    g = torch.Generator().manual_seed(4)
    flow = torch.randn(1, 2, 20, 30, generator=g) * 3
    mask = torch.rand(20, 30, generator=g) < nan_fraction
    flow[0, 0][mask] = float("nan")
    want = _vbench_get_score(flow)
    got = top5_flow_magnitude(flow)
    if np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(want, rel=1e-5)


def test_degenerate_raft_size_warns_once_naming_it():
    g = torch.Generator().manual_seed(5)
    video = _texture(g, f=4, h=72, w=200)  # padded 72x200: a side in 64..127

    def flow(a, b):
        return torch.full((1, 2, *a.shape[-2:]), float("nan"))

    import rfvideo.eval.dynamic as dyn

    dyn._warned_sizes.discard((72, 200))
    with pytest.warns(UserWarning, match="padded frame size 72x200"):
        res = dynamic_degree([video, video], flow, fps=8)
    assert res.per_video == [0.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dynamic_degree([video], flow, fps=8)  # second time: silent
        dynamic_degree([_texture(g, f=3, h=136, w=200)], lambda a, b: torch.ones(1, 2, *a.shape[-2:]), fps=8)


def test_read_video_ignores_decord_s_global_bridge(tmp_path, monkeypatch):
    import av
    import decord

    g = torch.Generator().manual_seed(6)
    write_video(tmp_path / "x-0.mp4", _texture(g, f=4, h=32, w=64), fps=8)
    want, fps = folder_mod.read_video(tmp_path / "x-0.mp4")

    def no_av(*a, **k):
        raise AssertionError("fell back to PyAV")

    monkeypatch.setattr(av, "open", no_av)
    decord.bridge.set_bridge("torch")  # what VBench's ViCLIP reader leaves behind
    try:
        got, fps2 = folder_mod.read_video(tmp_path / "x-0.mp4")
    finally:
        decord.bridge.set_bridge("native")
    assert torch.equal(got, want) and fps2 == fps and got.dtype == torch.uint8


def test_read_video_falls_back_only_on_decord_errors(tmp_path, monkeypatch):
    import decord

    g = torch.Generator().manual_seed(7)
    write_video(tmp_path / "narrow-0.mp4", _texture(g, f=3, h=32, w=48), fps=8)  # decord2 fails at 48 px
    video, _ = folder_mod.read_video(tmp_path / "narrow-0.mp4")
    assert video.shape == (3, 3, 32, 48)

    def broken(self, idx):
        raise MemoryError("not decord's stride bug")

    monkeypatch.setattr(decord.VideoReader, "get_batch", broken)
    with pytest.raises(MemoryError):
        folder_mod.read_video(tmp_path / "narrow-0.mp4")
