"""Streamed suite sampling (`stream_jobs` + `pipeline_video_stream`): each chunk is encoded as it is decoded,
the file equals the full-decode path's, a failure or an interrupt never leaves a partial file, a rerun
resumes, and a video of another format is refused before it is renamed into place.

References: `module.generate` (whole latents, one `vae.decode`) written by `write_video` (the previous
path), and invariants of the folder (only complete, tagged files under their names).
Legend: `F` pixel frames, `H W` pixel height/width.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from helpers import tiny_recipe_yaml
from rfvideo.data.video_io import write_video
from rfvideo.eval.protocol import PROTOCOL_FILE, ProtocolMismatchError, read_video_tag, video_tag
from rfvideo.eval.sampling import pipeline_video_stream, stream_jobs, video_frame_count
from rfvideo.eval.suite import packaged_suite_dir, suite_jobs
from rfvideo.pipeline import RFVideoPipeline

SUITE = packaged_suite_dir()

YAML = tiny_recipe_yaml()


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    from rfvideo.cli.lightning import build_module

    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(YAML)
    return build_module([str(path)]).eval()


def _frames(path: Path) -> np.ndarray:
    """(F H W 3) int16 of an mp4 as PyAV decodes it."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)


def _texture_stream(calls: list, frames_per_chunk=(3, 4), h=16, w=24, fail_at: tuple | None = None):
    """(prompt, seed) -> seeded random chunks (F 3 H W); raises KeyboardInterrupt at (call, chunk)."""

    def stream(prompt, seed):
        calls.append(seed)
        g = torch.Generator().manual_seed(int(seed))
        for c, n in enumerate(frames_per_chunk):
            if fail_at == (len(calls), c):
                raise KeyboardInterrupt
            yield torch.rand(n, 3, h, w, generator=g)

    return stream


def _protocol(**kw):
    return {"suite": "vbench", "num_seeds": 1, "checkpoint": {"sha256": "ab"}, **kw}


def test_streamed_video_equals_module_generate_written_whole(module, tmp_path):
    jobs = suite_jobs(SUITE, dimensions=["temporal_flickering"], num_seeds=2)[:2]
    stream = pipeline_video_stream(RFVideoPipeline.from_module(module))
    chunks = list(stream(jobs[1].gen_prompt, jobs[1].seed))
    assert [c.shape for c in chunks] == [(5, 3, 16, 16), (8, 3, 16, 16)]  # 1 + 4 (k - 1), then 4 k
    with torch.no_grad():
        whole = module.generate([jobs[1].gen_prompt], seeds=[jobs[1].seed])[0]  # full decode
    assert whole.std() > 1e-2  # a real video, not a constant
    torch.testing.assert_close(torch.cat(chunks), whole, atol=1e-5, rtol=0)

    rep = stream_jobs(stream, jobs, tmp_path, protocol=_protocol(), dimensions=["x"], fps=16, progress=False)
    assert rep.written == [j.filename for j in jobs] and rep.skipped == []
    ref = write_video(tmp_path / "ref" / "full.mp4", whole, 16, metadata=video_tag(rep.protocol_id))
    ours, theirs = _frames(tmp_path / jobs[1].filename), _frames(ref)
    assert ours.shape == theirs.shape == (13, 16, 16, 3)
    quantised = [(x.clamp(0, 1) * 255).round().to(torch.uint8) for x in (torch.cat(chunks), whole)]
    # Streamed and full decode agree to ~4e-7 here, so the encoder gets the same uint8 frames and the
    # files are byte for byte the same (another seed could put a pixel on a rounding edge: 1 level).
    assert torch.equal(*quantised)
    assert (tmp_path / jobs[1].filename).read_bytes() == ref.read_bytes()
    assert np.array_equal(ours, theirs)
    assert read_video_tag(tmp_path / jobs[0].filename) == rep.protocol_id
    assert np.abs(_frames(tmp_path / jobs[0].filename) - ours).max() > 10  # its own seed, its own video
    video = json.loads((tmp_path / PROTOCOL_FILE).read_text())["video"]
    assert video == {"frames": 13, "height": 16, "width": 16}


def test_interrupted_stream_leaves_no_partial_file_and_rerun_resumes(tmp_path):
    jobs = suite_jobs(SUITE, dimensions=["scene"], num_seeds=1)[:3]
    calls: list = []
    with pytest.raises(KeyboardInterrupt):  # killed mid-video: after one chunk of the second video
        stream_jobs(_texture_stream(calls, fail_at=(2, 1)), jobs, tmp_path, protocol=_protocol(),
                    dimensions=["scene"], fps=8, progress=False)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([PROTOCOL_FILE, jobs[0].filename])
    calls.clear()
    rep = stream_jobs(_texture_stream(calls), jobs, tmp_path, protocol=_protocol(), dimensions=["scene"],
                      fps=8, progress=False)  # fmt: skip
    assert rep.skipped == [jobs[0].filename] and rep.written == [j.filename for j in jobs[1:]]
    assert calls == [j.seed for j in jobs[1:]]  # only the missing videos, each with its own seed
    assert all(video_frame_count(tmp_path / j.filename) == 7 for j in jobs)
    # A truncated file is sampled again; the others are kept.
    victim = tmp_path / jobs[2].filename
    victim.write_bytes(victim.read_bytes()[:300])
    calls.clear()
    rep = stream_jobs(_texture_stream(calls), jobs, tmp_path, protocol=_protocol(), dimensions=["scene"],
                      fps=8, progress=False)  # fmt: skip
    assert rep.written == [jobs[2].filename] and calls == [jobs[2].seed]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_another_format_is_refused_before_the_rename(tmp_path):
    jobs = suite_jobs(SUITE, dimensions=["scene"], num_seeds=1)[:2]
    stream_jobs(_texture_stream([]), jobs, tmp_path, protocol=_protocol(), dimensions=["scene"], fps=8,
                progress=False)  # fmt: skip
    victim = tmp_path / jobs[1].filename
    victim.unlink()
    with pytest.raises(ProtocolMismatchError, match="this run makes .'frames': 9"):
        stream_jobs(_texture_stream([], frames_per_chunk=(5, 4)), jobs, tmp_path, protocol=_protocol(),
                    dimensions=["scene"], fps=8, progress=False)  # fmt: skip
    assert not victim.exists() and not victim.with_name(victim.name + ".tmp").exists()
    with pytest.raises(ValueError, match="stream returned 7 frames .* the protocol has 9"):
        stream_jobs(_texture_stream([]), jobs, tmp_path, protocol=_protocol(), dimensions=["scene"], fps=8,
                    num_frames=9, progress=False)  # fmt: skip
    assert not victim.exists()


def test_bad_streams_are_named(tmp_path):
    jobs = suite_jobs(SUITE, dimensions=["scene"], num_seeds=1)[:1]

    def flat(prompt, seed):
        yield torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed))

    with pytest.raises(ValueError, match=r"chunk of shape \(3, 16, 16\)"):
        stream_jobs(flat, jobs, tmp_path, protocol=_protocol(), dimensions=["scene"], fps=8, progress=False)
    with pytest.raises(ValueError, match="no frames"):
        stream_jobs(lambda p, s: iter(()), jobs, tmp_path, protocol=_protocol(), dimensions=["scene"], fps=8,
                    progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="fps must be positive"):
        stream_jobs(flat, jobs, tmp_path, protocol=_protocol(), dimensions=["scene"], fps=0, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [PROTOCOL_FILE]


def test_pipeline_stream_refuses_bad_inputs(module):
    pipe = RFVideoPipeline.from_module(module)
    with pytest.raises(
        ValueError, match="num_frames=9 is 3 latent frames, not a multiple of the chunk size 2"
    ):
        pipeline_video_stream(pipe, num_frames=9)
    with pytest.raises(ValueError, match="num_frames=6"):
        pipeline_video_stream(pipe, num_frames=6)
