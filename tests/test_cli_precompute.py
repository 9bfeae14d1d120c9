"""`precompute latents` with bad inputs: a caption that is not UTF-8 is skipped and listed while the
other videos are still encoded and written; a size that is not a multiple of 8 is refused before any
video or weight is read; a run that encodes nothing exits non-zero; the decoders' per-file error lines
stay off stderr (the report holds the reasons)."""

from __future__ import annotations

import json

import pytest
import torch

from rfvideo.cli import main
from rfvideo.data import ShardedTensorDataset, read_video, write_video
from rfvideo.data.precompute import precompute_latents
from rfvideo.models.tiny import tiny_wan_vae


def _smooth_video(g: torch.Generator, frames: int = 9, size: int = 32) -> torch.Tensor:
    """(F 3 H W) in [0,1]: a random low-frequency pattern drifting over time (codec friendly)."""
    base = torch.rand(1, 3, 4, 4, generator=g)
    big = torch.nn.functional.interpolate(base, size=(size * 2, size * 2), mode="bilinear")
    return torch.stack([big[0, :, t : t + size, t : t + size] for t in range(frames)])


@pytest.fixture()
def videos(tmp_path):
    """good_a, good_b (UTF-8 captions, one with a BOM), latin1 (a Latin-1 caption), broken (cut mp4)."""
    g = torch.Generator().manual_seed(0)
    root = tmp_path / "videos"
    for name in ("good_a", "latin1", "good_b"):
        write_video(root / f"{name}.mp4", _smooth_video(g), fps=8)
    (root / "good_a.txt").write_text("a drifting pattern", encoding="utf-8")
    (root / "good_b.txt").write_bytes("\ufeffun motif qui dérive".encode())
    (root / "latin1.txt").write_bytes("un café crème".encode("latin-1"))
    (root / "broken.mp4").write_bytes((root / "good_a.mp4").read_bytes()[:200])
    (root / "broken.txt").write_text("broken")
    return root


@pytest.fixture(scope="module")
def vae():
    return tiny_wan_vae(seed=2)


def test_bad_caption_is_skipped_and_the_rest_written(videos, vae, tmp_path):
    out = tmp_path / "lat"
    # shard_size > number of videos: every sample is still buffered when the bad caption comes
    report = precompute_latents(
        videos, out, vae, num_frames=9, height=32, width=32, shard_size=16, progress=False
    )
    assert (report.num_encoded, report.num_failed) == (2, 2)
    reasons = {json.dumps(f["path"]).split("/")[-1].strip('"'): f["reason"] for f in report.failed}
    assert reasons == {"latin1.mp4": "bad_caption", "broken.mp4": "unreadable"}
    assert "latin1.txt: caption is not UTF-8 (byte 0xe9" in next(f["error"] for f in report.failed
                                                                 if f["reason"] == "bad_caption")  # fmt: skip
    ds = ShardedTensorDataset(out)
    got = {ds[i]["prompt"]: ds[i]["latents"] for i in range(len(ds))}
    assert set(got) == {"a drifting pattern", "un motif qui dérive"}  # BOM dropped
    with torch.no_grad():
        want = vae.encode(read_video(videos / "good_b.mp4", num_frames=9, height=32, width=32)[None])[0]
        want = want.transpose(0, 1)  # (c f h w) -> the shards' (f c h w)
    torch.testing.assert_close(got["un motif qui dérive"], want)


def test_decoder_error_lines_stay_off_stderr(videos, vae, tmp_path, capfd):
    precompute_latents(videos, tmp_path / "loud", vae, num_frames=9, height=32, width=32, progress=False,
                       quiet=False)  # fmt: skip
    loud = capfd.readouterr().err
    assert "broken.mp4" in loud  # the decoder's own line: the check below can fail
    report = precompute_latents(videos, tmp_path / "quiet", vae, num_frames=9, height=32, width=32,
                                progress=False)  # fmt: skip
    quiet = capfd.readouterr().err
    assert "broken.mp4" not in quiet and "moov atom" not in quiet
    assert any(f["path"].endswith("broken.mp4") for f in report.failed)


@pytest.mark.parametrize("height,width,name", [(36, 32, "height"), (32, 30, "width")])
def test_size_not_multiple_of_8(videos, vae, tmp_path, height, width, name):
    with pytest.raises(ValueError, match=rf"{name} must be a multiple of 8 \(the VAE's stride\), got"):
        precompute_latents(videos, tmp_path / "x", vae, num_frames=9, height=height, width=width)
    assert not (tmp_path / "x").exists()


def _argv(tmp_path, videos, *extra: str) -> list[str]:
    return ["precompute", "latents", "--wan", str(tmp_path), "--videos", str(videos), "--out",
            str(tmp_path / "o"), *extra]  # fmt: skip


@pytest.fixture()
def no_weights(monkeypatch):
    """Loading the VAE fails the test: the CLI must refuse before it."""
    from rfvideo.models import WanVAE

    monkeypatch.setattr(WanVAE, "from_pretrained", classmethod(lambda cls, *a, **k: pytest.fail("loaded")))
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--height", "36"], "error: --height must be a multiple of 8, got 36"),
        (["--width", "100"], "error: --width must be a multiple of 8, got 100"),
        (["--pixel-frames", "8"], "error: --pixel-frames must be 1 + 4k (e.g. 81), got 8"),
    ],
)
def test_cli_refuses_sizes_before_loading(videos, tmp_path, capsys, no_weights, extra, message):
    argv = _argv(
        tmp_path, videos, "--pixel-frames", "9", "--height", "32", "--width", "32", "--device", "cpu", *extra
    )
    assert main(argv) == 2
    assert capsys.readouterr().err == message + "\n"


@pytest.mark.parametrize(
    "value,want",
    [
        ("0", "a positive integer"),
        ("-3", "a positive integer"),
        ("2.7", "an integer"),
        ("many", "an integer"),
    ],
)
def test_cli_counts_must_be_positive_integers(videos, tmp_path, capsys, no_weights, value, want):
    argv = _argv(tmp_path, videos, "--pixel-frames", value)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert f"argument --pixel-frames: expected {want}, got '{value}'" in capsys.readouterr().err


def test_cli_old_option_name_points_to_the_new_one(videos, tmp_path, capsys, no_weights):
    argv = _argv(tmp_path, videos, "--num-frames", "9")
    with pytest.raises(SystemExit):
        main(argv)
    assert "--num-frames was renamed to --pixel-frames" in capsys.readouterr().err


def test_cli_exits_nonzero_when_nothing_was_encoded(tmp_path, vae, monkeypatch, capsys):
    from rfvideo.models import WanVAE

    monkeypatch.setattr(WanVAE, "from_pretrained", classmethod(lambda cls, *a, **k: vae))
    root = tmp_path / "videos"
    root.mkdir()
    (root / "cut.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    (root / "cut.txt").write_text("a caption")
    argv = _argv(tmp_path, root, "--pixel-frames", "9", "--height", "32", "--width", "32", "--device", "cpu")
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "encoded 0 videos, skipped 1" in out and "error: no video was encoded" in out


@pytest.fixture()
def no_text_weights(monkeypatch):
    from rfvideo.models import TextEncoder

    monkeypatch.setattr(
        TextEncoder, "from_pretrained", classmethod(lambda cls, *a, **k: pytest.fail("loaded"))
    )
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)


def test_embeddings_bad_prompt_files_fail_before_loading(tmp_path, capsys, no_text_weights):
    base = [
        "precompute",
        "embeddings",
        "--wan",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--device",
        "cpu",
    ]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert main([*base, "--prompts", str(empty)]) == 2
    assert capsys.readouterr().err == f"error: --prompts: no prompt in {str(empty)!r}\n"
    latin = tmp_path / "latin.txt"
    latin.write_bytes("a fox\nun café\n".encode("latin-1"))
    assert main([*base, "--prompts", str(latin)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{latin}:2: not UTF-8 text (byte 0xe9" in err[0]
