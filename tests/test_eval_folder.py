"""Offline folder scoring on real mp4 files, and backbone loading from tiny local checkpoints."""

import json

import av
import numpy as np
import pytest
import torch

from rfvideo.eval import (
    HFCLIP,
    load_backbones,
    overall_consistency,
    prompt_from_filename,
    read_video,
    score_video_folder,
    subject_consistency,
    temporal_flickering,
)


def write_mp4(path, frames, fps=8):
    """frames: (f h w 3) uint8 -> H.264 mp4 (yuv420p)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _smooth_video(gen, f=6, h=48, w=64):
    base = torch.rand(1, 3, h // 8, w // 8, generator=gen)
    drift = torch.rand(f, 3, 1, 1, generator=gen) * 0.2
    v = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear").clamp(0, 0.8) + drift
    return (v.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class TinyViCLIP:
    def __init__(self, gen):
        self.w = torch.randn(3, 8, generator=gen)

    def encode_vision(self, x, test=False):
        return x.mean(dim=(1, 3, 4)) @ self.w

    def encode_text(self, text):
        g = torch.Generator().manual_seed(len(text))
        return torch.randn(1, 8, generator=g)


def test_prompt_from_filename():
    assert prompt_from_filename("/x/a cat, running-3.mp4") == "a cat, running"
    assert prompt_from_filename("a dog.mp4") == "a dog"


def test_score_video_folder_matches_direct_calls(tmp_path):
    gen = torch.Generator().manual_seed(0)
    names = ["a cat-0.mp4", "a cat-1.mp4", "a red car-0.mp4"]
    for n in names:
        write_mp4(tmp_path / n, _smooth_video(gen))
    (tmp_path / "notes.txt").write_text("ignored")
    proj = torch.randn(3, 8, generator=gen)
    dino = lambda x: x.mean(dim=(2, 3)) @ proj
    viclip = TinyViCLIP(gen)
    out = score_video_folder(
        tmp_path,
        ["temporal_flickering", "subject consistency", "overall_consistency"],
        {"subject_consistency": dino, "overall_consistency": viclip},
    )
    assert out["num_videos"] == 3
    decoded = [read_video(tmp_path / n) for n in sorted(names)]
    vids = [v for v, _ in decoded]
    assert (
        vids[0].dtype == torch.uint8 and vids[0].shape == (6, 3, 48, 64) and decoded[0][1] == pytest.approx(8)
    )
    dims = out["dimensions"]
    assert dims["temporal_flickering"]["score"] == pytest.approx(temporal_flickering(vids).aggregate)
    assert dims["subject_consistency"]["score"] == pytest.approx(subject_consistency(vids, dino).aggregate)
    prompts = ["a cat", "a cat", "a red car"]
    oc = overall_consistency(vids, prompts, viclip)
    assert dims["overall_consistency"]["per_video"]["a red car-0.mp4"] == pytest.approx(oc.per_video[2])
    assert out["aggregate"]["label"].startswith("subset of 3/16")
    with pytest.raises(ValueError, match="no backbone given for dimension 'aesthetic_quality'"):
        score_video_folder(tmp_path, ["aesthetic_quality"], {})
    with pytest.raises(ValueError, match="not implemented"):
        score_video_folder(tmp_path, ["color"], {})


def _tiny_clip_dir(tmp_path):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for t in letters + [c + "</w>" for c in letters]:
        vocab[t] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=len(vocab),
            max_position_embeddings=77,
            eos_token_id=1,
            bos_token_id=0,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=224,
            patch_size=32,
        ),
        projection_dim=8,
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    out = tmp_path / "clip"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model


def test_load_backbones_from_local_files(tmp_path):
    from transformers import ViTConfig, ViTModel

    clip_dir, ref = _tiny_clip_dir(tmp_path)
    vit = ViTModel(
        ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=224,
            patch_size=16,
        ),
        add_pooling_layer=False,
    ).eval()
    vit.save_pretrained(tmp_path / "dino")
    head = torch.nn.Linear(8, 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    bb = load_backbones(
        {
            "subject_consistency": tmp_path / "dino",
            "background_consistency": clip_dir,
            "appearance style": clip_dir,
            "aesthetic_quality": {"clip": clip_dir, "head": tmp_path / "head.pth"},
            "temporal_flickering": None,
        }
    )
    assert (
        isinstance(bb["background_consistency"], HFCLIP)
        and bb["appearance_style"] is bb["background_consistency"]
    )
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expect = ref.visual_projection(ref.vision_model(pixel_values=x).pooler_output)
        torch.testing.assert_close(bb["background_consistency"].image(x), expect)
        assert bb["appearance_style"].text(["a cat"]).shape == (1, 8)
        feats = bb["subject_consistency"](torch.randn(1, 3, 224, 280))  # non-square: interpolated positions
        assert feats.shape == (1, 16)
        clip_image, loaded_head = bb["aesthetic_quality"]
        torch.testing.assert_close(loaded_head.weight, head.weight)
    assert bb["temporal_flickering"] is None
    with pytest.raises(FileNotFoundError, match="subject_consistency: backbone path does not exist"):
        load_backbones({"subject_consistency": tmp_path / "missing"})
    with pytest.raises(ValueError, match="key 'head'"):
        load_backbones({"aesthetic_quality": {"clip": clip_dir}})
    with pytest.raises(
        ValueError, match="not implemented in rfvideo .Tag2Text.; use .rfvideo vbench --official"
    ):
        load_backbones({"scene": tmp_path})


def test_read_video_roundtrip_close_to_source(tmp_path):
    gen = torch.Generator().manual_seed(2)
    frames = _smooth_video(gen)
    write_mp4(tmp_path / "v-0.mp4", frames)
    v, fps = read_video(tmp_path / "v-0.mp4")
    assert fps == pytest.approx(8)
    err = np.abs(v.permute(0, 2, 3, 1).numpy().astype(int) - frames.astype(int)).mean()
    assert err < 6  # lossy H.264 + yuv420p, but the same picture


def test_read_video_unaligned_width_falls_back_to_pyav(tmp_path):
    gen = torch.Generator().manual_seed(3)
    frames = _smooth_video(gen, h=32, w=48)  # decord2 3.4 fails on widths that are not multiples of 64
    write_mp4(tmp_path / "v-0.mp4", frames)
    v, _ = read_video(tmp_path / "v-0.mp4")
    assert v.shape == (6, 3, 32, 48)
    assert np.abs(v.permute(0, 2, 3, 1).numpy().astype(int) - frames.astype(int)).mean() < 6
