"""`rfvideo generate`: each video is streamed into `{index:04d}-{slug}.mp4` and equals `module.generate` for
the same seed; it runs from a training config without building rewards or data, or from an exported
pipeline folder; any prompt (1,000 characters, "/", repeated) gives a valid, unique file; bad input is one
line before any weights load.

Legend: `F` pixel frames, `H W` pixel height/width.
"""

from __future__ import annotations

import functools
import json

import av
import numpy as np
import pytest

from rfvideo.cli import main
from rfvideo.cli.generate import output_name, slug
from rfvideo.data.video_io import write_video

YAML = """
model:
  class_path: rfvideo.modules.RewardForcingModule
  init_args:
    generator:
      class_path: rfvideo.models.tiny.tiny_causal_wan
      init_args: {{num_frames_per_chunk: 2, seed: 1, init_scale: 0.2}}
    vae:
      class_path: rfvideo.models.tiny.tiny_wan_vae
      init_args: {{seed: 2}}
    text_encoder:
      class_path: rfvideo.models.tiny.tiny_text_encoder
      init_args: {{seed: 3}}
    rewards:
      class_path: rfvideo.rewards.RewardEnsemble
      init_args:
        terms:
          image_reward:
            class_path: rfvideo.modules.components.load_image_reward
            init_args:
              checkpoint: /nowhere/ImageReward.pt
              med_config: /nowhere/med.json
              tokenizer: /nowhere/bert
        weights: {{image_reward: 1.0}}
    num_latent_frames: {frames}
    latent_size: [2, 2]
    ema_decay: {ema}
data:
  class_path: rfvideo.data.RFVideoDataModule
  init_args: {{train_prompts: /nowhere/prompts.txt, batch_size: 1}}
"""


def _config(tmp_path, frames: int = 4, ema: str = "null") -> str:
    """A stage-2 config whose reward weights and prompt file do not exist: generate must not need them."""
    path = tmp_path / "tiny.yaml"
    path.write_text(YAML.format(frames=frames, ema=ema))
    return str(path)


def _frames(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)


def _comment(path) -> str:
    with av.open(str(path)) as c:
        return c.metadata.get("comment", "")


def _module(cfg: str):
    """The module the config describes, with a prompt file and reward stand-in so that it can be built."""
    from rfvideo.demo.world.prompt_color import PromptColorReward
    from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
    from rfvideo.modules import RewardForcingModule
    from rfvideo.rewards import RewardEnsemble

    return RewardForcingModule(
        generator=tiny_causal_wan(num_frames_per_chunk=2, seed=1, init_scale=0.2),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble(terms={"c": PromptColorReward()}, weights={"c": 1.0}),
        num_latent_frames=4,
        latent_size=(2, 2),
        ema_decay=None,
    )


def test_generate_from_a_training_config_without_rewards_or_data(tmp_path, capsys) -> None:
    cfg, out = _config(tmp_path), tmp_path / "videos"
    argv = ["generate", "--config", cfg, "--prompt", "a red fox", "--prompt", "rain on a lake"]
    assert main([*argv, "--num-samples", "2", "--seed", "5", "--out", str(out), "--no-progress"]) == 0
    names = sorted(p.name for p in out.glob("*.mp4"))
    assert names == [
        "0000-a-red-fox.mp4",
        "0001-a-red-fox.mp4",
        "0002-rain-on-a-lake.mp4",
        "0003-rain-on-a-lake.mp4",
    ]
    settings = json.loads((out / "generate.json").read_text())
    assert [f["seed"] for f in settings["files"]] == [5, 6, 7, 8]  # seed + prompt_index * 2 + i
    assert settings["num_frames"] == 13 and settings["num_frames_per_chunk"] == 2
    speed = settings["speed"]
    assert speed["pixel_frames"] == 4 * 13 and speed["model_fps"] >= speed["end_to_end_fps"] > 0
    assert speed["load_s"] > 0 and speed["first_frame_s"] > 0
    printed = capsys.readouterr().out
    assert "model-only FPS" in printed and "end-to-end FPS" in printed and "first pixel frame" in printed

    # reference: the module's own generate (whole video, then one decode), written in one go
    video = _module(cfg).generate(["rain on a lake"], seeds=[8])[0]
    ref = write_video(tmp_path / "ref.mp4", video, metadata={"comment": "rain on a lake"})
    ours, theirs = _frames(out / "0003-rain-on-a-lake.mp4"), _frames(ref)
    assert ours.shape == theirs.shape == (13, 16, 16, 3)
    # streamed and full decode agree to ~1e-7, so at most a rare uint8 rounding step differs
    assert np.abs(ours - theirs).max() <= 2 and video.std() > 1e-3


def test_any_prompt_gives_a_valid_unique_file_from_a_pipeline_folder(tmp_path) -> None:
    from rfvideo.modules.pipeline_config import pipeline_from_config

    folder = tmp_path / "pipe"
    pipeline_from_config(_config(tmp_path)).save_pretrained(folder)
    long = "a fox " + "x" * 994  # 1,000 characters
    prompts = [long, "a red/blue fox", "a red/blue fox", "ünïcödé fox"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n\n")
    out = tmp_path / "v"
    argv = ["generate", "--model", str(folder), "--prompts", str(tmp_path / "p.txt"), "--out", str(out)]
    assert main([*argv, "--num-frames", "5", "--no-progress"]) == 0
    files = json.loads((out / "generate.json").read_text())["files"]
    assert [f["file"] for f in files] == [output_name(i, p) for i, p in enumerate(prompts)]
    assert len({f["file"] for f in files}) == 4 and all(len(f["file"]) <= 4 + 1 + 80 + 4 for f in files)
    for f, p in zip(files, prompts, strict=True):
        assert _frames(out / f["file"]).shape[0] == 5 and _comment(out / f["file"]) == p
    # the same seed rule as from the config: same prompt, same index -> the same video
    assert not np.array_equal(_frames(out / files[1]["file"]), _frames(out / files[2]["file"]))


def test_slug() -> None:
    assert slug("A Red/Blue  fox!") == "a-red-blue-fox" and slug("///") == "video"
    assert slug("é" * 3 + " x") == "eee-x" and len(slug("word " * 100)) <= 80


def test_existing_files_are_never_replaced_silently(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    out = tmp_path / "v"
    out.mkdir()
    (out / "0000-x.mp4").write_bytes(b"precious")
    code = main(["generate", "--config", _config(tmp_path), "--prompt", "x", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'0000-x.mp4'" in err[0] and "--overwrite" in err[0]
    assert (out / "0000-x.mp4").read_bytes() == b"precious"


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--num-frames", "10"], "--num-frames=10: pixel frames must be 1 + 4k"),
        (
            ["--num-frames", "9"],
            "--num-frames=9 is 3 latent frames, not a multiple of the generator's chunk size 2",
        ),
        (["--prompt", "  "], "prompt 1 is empty"),
        (["--ckpt", "/nowhere/last.ckpt"], "--ckpt: no such file"),
    ],
)
def test_bad_input_is_one_line_before_weights_load(tmp_path, capsys, monkeypatch, extra, match) -> None:
    import rfvideo.models.tiny as components

    @functools.wraps(components.tiny_causal_wan)
    def refuse(*args, **kwargs):
        raise AssertionError("the generator was built")

    monkeypatch.setattr(components, "tiny_causal_wan", refuse)
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    out = tmp_path / "videos"
    code = main(["generate", "--config", _config(tmp_path), "--prompt", "x", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and match in err[0], err
    assert not out.exists()


def test_missing_inputs_are_all_listed_one_per_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    text = YAML.format(frames=4, ema="null").replace(
        "init_scale: 0.2}", "init_scale: 0.2, init_checkpoint: /nowhere/stage1.ckpt}"
    )
    text = text.replace("{seed: 2}", "{seed: 2, state_dict_path: /nowhere/vae.safetensors}")
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(text)
    code = main(["generate", "--config", str(cfg), "--prompt", "x", "--out", str(tmp_path / "v")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 2, err
    assert "stage1.ckpt" in err[0] and "vae.safetensors" in err[1]


def test_a_misspelt_component_argument_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(YAML.format(frames=4, ema="null").replace("init_scale: 0.2", "init_scal: 0.2"))
    code = main(["generate", "--config", str(cfg), "--prompt", "x", "--out", str(tmp_path / "v")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "model.init_args.generator" in err[0] and "'init_scal'" in err[0]


def test_version(capsys) -> None:
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rfvideo {version('rfvideo')}"
