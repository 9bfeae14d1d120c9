"""`rfvideo sample --suite vbench` streams each video into its mp4 through the pipeline (the shipped demo
config: a VAE without a streaming decoder, so `HistoryStreamDecoder` decodes chunk by chunk); each file
equals the full-decode path's (`RFVideoPipeline.__call__` for the job's seed, written whole by
`write_video` with the same tag) byte for byte; `--prompts-per-dimension` keeps the full run's seeds and
names; usage errors are one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rfvideo.cli import main
from rfvideo.cli.sample import first_prompts, sample_device
from rfvideo.data.video_io import write_video
from rfvideo.eval.protocol import PROTOCOL_FILE, read_video_tag, video_tag
from rfvideo.eval.suite import packaged_suite_dir, suite_jobs
from rfvideo.modules.pipeline_config import pipeline_from_config

DEMO = str(Path(__file__).resolve().parents[1] / "experiments" / "demo" / "reward_forcing.yaml")
DIMS = ["temporal_flickering", "subject_consistency"]


def test_first_prompts_keeps_the_full_run_s_seeds():
    jobs = suite_jobs(packaged_suite_dir(), dimensions=DIMS, num_seeds=2)
    few = first_prompts(jobs, DIMS, 2)
    assert len(few) == 2 * 2 * 2  # 2 prompts per dimension (none shared here), 2 seeds each
    for d in DIMS:
        assert len({j.prompt for j in few if d in j.dimensions}) == 2
    assert set(few) <= set(jobs)  # the same jobs: names, seeds and indices of the full run
    first_tf = [j for j in jobs if "temporal_flickering" in j.dimensions][:4]
    assert first_tf == [j for j in few if "temporal_flickering" in j.dimensions]
    # A prompt serving both dimensions counts for both.
    shared = suite_jobs(packaged_suite_dir(), dimensions=["scene", "background_consistency"], num_seeds=1)
    both = [j for j in shared if {"scene", "background_consistency"} <= set(j.dimensions)]
    assert both, "the suite has prompts tagged with both"
    assert len(first_prompts(both, ["scene", "background_consistency"], 1)) == 1


def test_streamed_sample_equals_the_full_decode_path(tmp_path, capsys):
    base = ["sample", "--suite", "vbench", "--config", DEMO, "--dimensions", *DIMS, "--prompts-per-dimension",
            "1", "--num-seeds", "1", "--no-progress"]  # fmt: skip
    a = tmp_path / "streamed"
    assert main([*base, "--out", str(a)]) == 0
    assert "wrote 2, kept 0 of 2" in capsys.readouterr().out
    protocol = json.loads((a / PROTOCOL_FILE).read_text())
    jobs = first_prompts(suite_jobs(packaged_suite_dir(), dimensions=DIMS, num_seeds=1), DIMS, 1)
    pipe = pipeline_from_config(DEMO)
    want = {"frames": pipe.config.num_frames, "height": pipe.config.height, "width": pipe.config.width}
    assert protocol["video"] == want
    for j in jobs:  # the previous path: the whole video at once, written whole
        g = torch.Generator().manual_seed(j.seed)
        whole = pipe(j.gen_prompt, generator=g, output_type="pt", progress=False).frames[0]
        tag = video_tag(read_video_tag(a / j.filename))
        ref = write_video(tmp_path / "full" / j.filename, whole, 16.0, metadata=tag)
        # the demo codec decodes exactly chunk by chunk: byte-identical files
        assert (a / j.filename).read_bytes() == ref.read_bytes(), j.filename
    assert len({(a / j.filename).read_bytes() for j in jobs}) == 2  # two seeds, two videos

    assert main([*base, "--out", str(a)]) == 0  # resumed: nothing to do
    assert "wrote 0, kept 2 of 2" in capsys.readouterr().out


def test_each_torchrun_rank_gets_its_own_gpu():
    assert sample_device("auto", cuda_count=0, environ={"LOCAL_RANK": "3"}) == "cpu"
    assert sample_device("auto", cuda_count=8, environ={}) == "cuda:0"
    assert [sample_device("auto", cuda_count=8, environ={"LOCAL_RANK": str(r)}) for r in (0, 5)] == [
        "cuda:0",
        "cuda:5",
    ]
    assert (
        sample_device("auto", cuda_count=2, environ={"LOCAL_RANK": "3"}) == "cuda:1"
    )  # more ranks than GPUs
    assert sample_device("cpu", cuda_count=8, environ={"LOCAL_RANK": "1"}) == "cpu"


def test_usage_errors_name_the_value(tmp_path, capsys):
    base = ["sample", "--config", DEMO, "--out", str(tmp_path / "o"), "--dimensions", "temporal_flickering",
            "--prompts-per-dimension", "1", "--num-seeds", "1", "--no-progress"]  # fmt: skip
    assert main([*base, "--num-frames", "7"]) == 2
    assert "--num-frames: num_frames=7" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything is written
    assert main([*base, "--device", "nodevice"]) == 2
    assert "--device: 'nodevice' is not a torch device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda:1"]) == 2
        assert "--device=cuda:1: no CUDA device here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--prompts-per-dimension", "0"])
    assert "--prompts-per-dimension" in capsys.readouterr().err
