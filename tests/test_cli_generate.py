"""`rfvideo generate`: each video is streamed into `{prompt}-{i}.mp4` chunk by chunk and equals what
`module.generate` makes for the same seed; settings and the three speed numbers land in generate.json;
a bad `--latent-frames` is one line naming the value, before any weights load.

Legend: `F` pixel frames, `H W` pixel height/width.
"""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from rfvideo.cli import main
from rfvideo.cli.generate import speed_summary
from rfvideo.data.video_io import write_video

YAML = """
model:
  class_path: rfvideo.modules.ODEInitModule
  init_args:
    generator:
      class_path: rfvideo.demo_world.components.tiny_causal_wan
      init_args: {{num_frames_per_chunk: 2, seed: 1, init_scale: 0.2}}
    vae:
      class_path: rfvideo.demo_world.components.tiny_wan_vae
      init_args: {{seed: 2}}
    text_encoder:
      class_path: rfvideo.demo_world.components.tiny_text_encoder
      init_args: {{seed: 3}}
    num_latent_frames: {frames}
    latent_size: [2, 2]
    ema_decay: {ema}
"""


def _config(tmp_path, frames: int = 4, ema: str = "null"):
    path = tmp_path / "tiny.yaml"
    path.write_text(YAML.format(frames=frames, ema=ema))
    return str(path)


def _frames(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)


def test_generate_streams_files_equal_to_module_generate(tmp_path, capsys) -> None:
    from rfvideo.cli.lightning import build_module

    cfg, out = _config(tmp_path), tmp_path / "videos"
    argv = ["generate", "--config", cfg, "--prompt", "a red fox", "--prompt", "rain on a lake"]
    assert main([*argv, "--num-samples", "2", "--seed", "5", "--out", str(out), "--no-progress"]) == 0
    names = sorted(p.name for p in out.glob("*.mp4"))
    assert names == ["a red fox-0.mp4", "a red fox-1.mp4", "rain on a lake-0.mp4", "rain on a lake-1.mp4"]
    settings = json.loads((out / "generate.json").read_text())
    assert [f["seed"] for f in settings["files"]] == [5, 6, 7, 8]  # seed + prompt_index * 2 + i
    assert settings["latent_frames"] == 4 and settings["num_frames_per_chunk"] == 2
    speed = settings["speed"]
    assert speed["pixel_frames"] == 4 * 13 and speed["model_fps"] >= speed["end_to_end_fps"] > 0
    printed = capsys.readouterr().out
    assert (
        "model-only FPS" in printed and "end-to-end FPS" in printed and "time to first pixel frame" in printed
    )

    # reference: the module's own generate (whole video, then one decode), written in one go
    module = build_module([cfg])
    video = module.generate(["rain on a lake"], seeds=[8])[0]
    ref = write_video(tmp_path / "ref.mp4", video, metadata={"comment": "rain on a lake"})
    ours, theirs = _frames(out / "rain on a lake-1.mp4"), _frames(ref)
    assert ours.shape == theirs.shape == (13, 16, 16, 3)
    # streamed and full decode agree to ~1e-7, so at most a rare uint8 rounding step differs
    assert np.abs(ours - theirs).max() <= 2
    assert video.std() > 1e-3


@pytest.mark.parametrize("value", ["0", "-2"])
def test_latent_frames_not_positive_is_an_argument_error(tmp_path, capsys, value) -> None:
    with pytest.raises(SystemExit) as e:
        main(
            [
                "generate",
                "--config",
                _config(tmp_path),
                "--prompt",
                "x",
                "--out",
                str(tmp_path),
                "--latent-frames",
                value,
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--latent-frames" in err[-1] and repr(value) in err[-1]


def test_latent_frames_not_a_chunk_multiple_fails_before_weights_load(tmp_path, capsys, monkeypatch) -> None:
    import functools

    import rfvideo.demo_world.components as components

    original = components.tiny_causal_wan

    @functools.wraps(original)
    def refuse(*args, **kwargs):
        raise AssertionError("the generator was built")

    monkeypatch.setattr(components, "tiny_causal_wan", refuse)
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    out = tmp_path / "videos"
    code = main(
        [
            "generate",
            "--config",
            _config(tmp_path),
            "--prompt",
            "x",
            "--out",
            str(out),
            "--latent-frames",
            "3",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "num_latent_frames=3" in err[0] and "num_frames_per_chunk=2" in err[0]
    assert not out.exists()


def test_bad_prompt_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    code = main(["generate", "--config", _config(tmp_path), "--prompt", "a/b", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'a/b'" in err[0]


def test_speed_summary_by_hand() -> None:
    timings = [
        [{"model": 1.0, "decode": 0.5}, {"model": 2.0, "decode": 0.5}],
        [{"model": 3.0, "decode": 1.0}],
    ]
    frames = [[5, 8], [5]]
    s = speed_summary(timings, frames)
    assert s["model_fps"] == pytest.approx(18 / 6.0)
    assert s["end_to_end_fps"] == pytest.approx(18 / 8.0)
    assert s["time_to_first_frame_s"] == pytest.approx((1.5 + 4.0) / 2)
