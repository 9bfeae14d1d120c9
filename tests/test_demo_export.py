"""The demo's trained model exported as a pipeline folder: `RFVideoPipeline.from_pretrained` rebuilds it (the
positioned generator with its position tables, the keyframe codec, the word-level text encoder) and it
generates exactly what the trained module generates; `serve --demo` and `generate --demo` pick it."""

from __future__ import annotations

import argparse

import torch

from rfvideo.cli import serve as serve_cli
from rfvideo.cli.model_source import DEMO_PIPELINE
from rfvideo.demo import stages
from rfvideo.demo.settings import DemoSettings
from rfvideo.pipeline import RFVideoPipeline


def test_exported_demo_model_rebuilds_and_generates_the_same_video(tmp_path, monkeypatch):
    s = DemoSettings.fast().replace(base_steps=2, reward_steps=2, ode_steps=2)
    world = stages.build_world(s, tmp_path)
    base, _ = stages.train_base(world, progress=False)
    traj = stages.make_trajectories(world, base)
    stage1, _ = stages.ode_init(world, base, traj, seed=0, out=tmp_path, progress=False)
    module, _ = stages.reward_forcing(
        world, stage1, "stage2_last_frame", seed=0, out=tmp_path, progress=False
    )
    folder = stages.export_pipeline(module, tmp_path / DEMO_PIPELINE)

    pipe = RFVideoPipeline.from_pretrained(folder)
    assert type(pipe.transformer).__name__ == "PositionedCausalWan"
    prompts = ["a red square moving left", "a cyan square moving up"]
    want = module.generate(prompts, seeds=[3, 4])
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    got = pipe(prompts, generator=gens, output_type="pt", progress=False).frames
    assert want.shape == got.shape and torch.equal(want, got)
    # the weights really are the trained ones: stage 1's pipeline generates otherwise
    assert not torch.equal(
        RFVideoPipeline.from_module(stage1)(prompts, generator=gens, output_type="pt").frames, want
    )
    # a second export replaces the first only once it is complete
    assert stages.export_pipeline(module, folder) == folder and (folder / "model_index.json").is_file()

    monkeypatch.chdir(tmp_path)  # --demo resolves outputs/demo/pipeline relative to the working folder
    args = argparse.Namespace(demo=True, model=None, config=None, ckpt=None, no_train=True)
    serve_cli._resolve_demo(args)
    assert args.model == str(DEMO_PIPELINE) and not args.demo
