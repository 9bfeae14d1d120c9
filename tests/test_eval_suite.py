"""VBench suite jobs: prompts, names, seeds, extended prompts and rank shards; protocol and sampling.

References: the shipped suite files themselves (line alignment, VBench_full_info.json's tags), VBench's
naming rule ``f"{prompt_en}-{i}.mp4"`` (vbench 0.1.5 ``build_full_info_json``), and invariants (shards
partition the jobs for every world size; resumed runs rewrite nothing valid). Shape legend: b videos,
F frames, H/W height/width.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from rfvideo.eval.protocol import (
    PROTOCOL_FILE,
    ProtocolMismatchError,
    check_folder_protocol,
    protocol_id,
    read_video_tag,
    write_protocol,
)
from rfvideo.eval.sampling import sample_jobs, video_frame_count
from rfvideo.eval.suite import (
    EXTENDED_PROMPTS,
    FULL_INFO,
    ORIGINAL_PROMPTS,
    dist_env,
    extended_prompt_map,
    packaged_suite_dir,
    shard,
    suite_jobs,
    suite_prompts,
    vbench_filename,
)

SUITE = packaged_suite_dir()
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "vbench"


def test_packaged_suite_is_vbench_s_files():
    if not SHARED.is_dir():
        pytest.skip("no shared VBench data folder")
    for name in (FULL_INFO, ORIGINAL_PROMPTS, EXTENDED_PROMPTS):
        assert (SUITE / name).read_bytes() == (SHARED / name).read_bytes(), name


def test_suite_prompts_and_counts():
    items = json.loads((SUITE / FULL_INFO).read_text())
    prompts = suite_prompts(SUITE / FULL_INFO)
    assert len(items) == 946 and len(prompts) == 944  # two prompts are listed twice
    merged = dict(prompts)
    # A repeated prompt serves the union of both entries' dimensions.
    assert set(merged["The bund Shanghai, oil painting"]) == {
        "appearance_style",
        "overall_consistency",
        "aesthetic_quality",
        "imaging_quality",
    }
    jobs = suite_jobs(SUITE)
    assert len(jobs) == 944 * 5
    assert len({j.filename for j in jobs}) == len(jobs)
    assert len({j.seed for j in jobs}) == len(jobs)
    # Per dimension, exactly the prompts VBench tags with it.
    for d in ("temporal_flickering", "subject_consistency", "color"):
        want = {it["prompt_en"] for it in items if d in it["dimension"]}
        got = {j.prompt for j in suite_jobs(SUITE, dimensions=[d], num_seeds=1)}
        assert got == want


def test_filenames_follow_vbench_s_lookup():
    # VBench 0.1.5 looks up f"{prompt_en}{special_str}-{i}{postfix}" for i in range(5), prompt verbatim.
    jobs = suite_jobs(SUITE, dimensions=["appearance_style"])
    items = json.loads((SUITE / FULL_INFO).read_text())
    expected = {
        f"{it['prompt_en']}-{i}.mp4"
        for it in items
        if "appearance_style" in it["dimension"]
        for i in range(5)
    }
    assert {j.filename for j in jobs} == expected
    odd = "A tranquil tableau of at the edge of the Arabian Desert, the ancient city of Petra beckoned"
    assert any(j.filename.startswith(odd) and j.filename.endswith("façades-0.mp4") for j in suite_jobs(SUITE))


@pytest.mark.parametrize(
    "prompt, match",
    [("a/b", "'/'"), ("", "empty"), (" x", "whitespace"), ("x" * 260, "255 bytes"), ("a\0b", "'\\\\x00'")],
)
def test_bad_prompt_names_rejected(prompt, match):
    with pytest.raises(ValueError, match=match):
        vbench_filename(prompt, 0)


def test_seeds_of_a_subset_equal_the_full_run_s():
    full = {(j.prompt, j.index): j.seed for j in suite_jobs(SUITE, base_seed=7)}
    sub = suite_jobs(SUITE, dimensions=["scene"], base_seed=7)
    assert all(full[(j.prompt, j.index)] == j.seed for j in sub)
    assert suite_jobs(SUITE, num_seeds=2, base_seed=3)[:3] == suite_jobs(SUITE, num_seeds=2, base_seed=3)[:3]


def test_extended_prompts_are_line_aligned_and_files_keep_the_original():
    orig = (SUITE / ORIGINAL_PROMPTS).read_text().splitlines()
    ext = (SUITE / EXTENDED_PROMPTS).read_text().splitlines()
    jobs = suite_jobs(SUITE, extended=True, num_seeds=1)
    by_prompt = {j.prompt: j for j in jobs}
    for k in (0, 100, 500, 945):
        j = by_prompt[orig[k].strip()]
        assert j.gen_prompt == ext[k].strip() and j.gen_prompt != j.prompt
        assert j.filename == f"{orig[k].strip()}-0.mp4"


def test_extended_map_refuses_misaligned_files(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "b.txt").write_text("one long\ntwo long\n")
    with pytest.raises(ValueError, match="not line-aligned"):
        extended_prompt_map(tmp_path / "a.txt", tmp_path / "b.txt")


@pytest.mark.parametrize("n_jobs", [0, 1, 7, 23])
def test_shards_partition_the_jobs_for_every_world_size(n_jobs):
    jobs = suite_jobs(SUITE, num_seeds=1)[:n_jobs]
    for world in range(1, 10):
        parts = [shard(jobs, r, world) for r in range(world)]
        flat = [j for p in parts for j in p]
        assert sorted(flat, key=jobs.index) == list(jobs)  # none lost, none duplicated
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced


def test_dist_env():
    assert dist_env({}) == (0, 1)
    assert dist_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    with pytest.raises(ValueError, match="rank must be in"):
        dist_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="integers"):
        dist_env({"RANK": "x"})


# ---- protocol and sampling ----------------------------------------------------------------------------


def _fake_generate(calls, frames=5, h=16, w=24):
    """(prompts, seeds) -> (b F 3 H W): a seeded random texture per video, counted in ``calls``."""

    def generate(prompts, seeds):
        calls.append(list(seeds))
        out = []
        for s in seeds:
            g = torch.Generator().manual_seed(int(s))
            out.append(torch.rand(frames, 3, h, w, generator=g))
        return torch.stack(out)

    return generate


def _protocol(**kw):
    return {"suite": "vbench", "num_seeds": 2, "checkpoint": {"sha256": "ab"}, **kw}


def test_sample_writes_tagged_videos_and_resumes(tmp_path):
    jobs = suite_jobs(SUITE, dimensions=["temporal_flickering"], num_seeds=2)[:5]
    calls = []
    rep = sample_jobs(
        _fake_generate(calls), jobs, tmp_path, protocol=_protocol(), dimensions=["x"], fps=8, batch_size=2
    )
    assert sorted(rep.written) == sorted(j.filename for j in jobs) and rep.skipped == []
    assert [len(c) for c in calls] == [2, 2, 1]
    written = json.loads((tmp_path / PROTOCOL_FILE).read_text())
    pid = written["protocol_id"]
    assert pid == protocol_id(_protocol()) == rep.protocol_id
    assert written["video"] == {"frames": 5, "height": 16, "width": 24}
    for j in jobs:
        assert read_video_tag(tmp_path / j.filename) == pid
        assert video_frame_count(tmp_path / j.filename) == 5
    # Rerun: nothing regenerated.
    calls.clear()
    rep2 = sample_jobs(_fake_generate(calls), jobs, tmp_path, protocol=_protocol(), dimensions=["x"], fps=8)
    assert calls == [] and rep2.written == []
    # A truncated file is sampled again (with its own seed), the rest kept.
    victim = tmp_path / jobs[3].filename
    victim.write_bytes(victim.read_bytes()[:200])
    rep3 = sample_jobs(_fake_generate(calls), jobs, tmp_path, protocol=_protocol(), dimensions=["x"], fps=8)
    assert rep3.written == [jobs[3].filename] and calls == [[jobs[3].seed]]
    # A run that makes another format under the same protocol id is refused before writing.
    victim.unlink()
    with pytest.raises(ProtocolMismatchError, match="this run makes .'frames': 7"):
        sample_jobs(
            _fake_generate([], frames=7), jobs, tmp_path, protocol=_protocol(), dimensions=["x"], fps=8
        )
    assert not victim.exists()


def test_interrupted_write_leaves_no_partial_file(tmp_path):
    from rfvideo.data.video_io import write_video

    jobs = suite_jobs(SUITE, dimensions=["scene"], num_seeds=1)[:3]
    n = []

    def flaky(path, video, fps, **kw):
        n.append(path)
        if len(n) == 2:
            write_video(path, video[:2], fps, **kw)  # a complete file for the real writer...
            Path(path).unlink()
            raise KeyboardInterrupt  # ...then the run is killed before the next one
        return write_video(path, video, fps, **kw)

    with pytest.raises(KeyboardInterrupt):
        sample_jobs(
            _fake_generate([]), jobs, tmp_path, protocol=_protocol(), dimensions=["scene"], fps=8, write=flaky
        )
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([PROTOCOL_FILE, jobs[0].filename])  # no temp file, no partial video


def test_write_video_interrupted_mid_encode_removes_temp(tmp_path, monkeypatch):
    import av

    from rfvideo.data.video_io import write_video

    real = av.VideoFrame.from_ndarray
    count = []

    def boom(*a, **k):
        count.append(1)
        if len(count) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", boom)
    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path / "v.mp4", torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert list(tmp_path.iterdir()) == []


def test_protocol_mismatch_is_refused(tmp_path):
    jobs = suite_jobs(SUITE, dimensions=["scene"], num_seeds=1)[:2]
    sample_jobs(_fake_generate([]), jobs, tmp_path / "a", protocol=_protocol(), dimensions=["scene"], fps=8)
    other = _protocol(checkpoint={"sha256": "cd"})
    with pytest.raises(ProtocolMismatchError, match="differs in checkpoint"):
        sample_jobs(_fake_generate([]), jobs, tmp_path / "a", protocol=other, dimensions=["scene"], fps=8)
    # Scoring side: a video of protocol B copied into A's folder is named.
    sample_jobs(_fake_generate([]), suite_jobs(SUITE, dimensions=["color"], num_seeds=1)[:1], tmp_path / "b",
                protocol=other, dimensions=["color"], fps=8)  # fmt: skip
    stray = next(p for p in (tmp_path / "b").iterdir() if p.suffix == ".mp4")
    shutil.copy(stray, tmp_path / "a" / stray.name)
    files = sorted((tmp_path / "a").glob("*.mp4"))
    with pytest.raises(ProtocolMismatchError, match=stray.name.replace("(", r"\(").replace(")", r"\)")):
        check_folder_protocol(tmp_path / "a", files)
    # Without protocol.json, tags of two protocols are still caught.
    (tmp_path / "a" / PROTOCOL_FILE).unlink()
    with pytest.raises(ProtocolMismatchError, match="mix sampling protocols"):
        check_folder_protocol(tmp_path / "a", files)
    (tmp_path / "a" / stray.name).unlink()
    assert check_folder_protocol(tmp_path / "a", sorted((tmp_path / "a").glob("*.mp4"))) == {
        "protocol_id": protocol_id(_protocol())
    }


def test_edited_protocol_file_is_refused(tmp_path):
    write_protocol(tmp_path, _protocol(), ["scene"])
    data = json.loads((tmp_path / PROTOCOL_FILE).read_text())
    data["protocol"]["num_seeds"] = 1
    (tmp_path / PROTOCOL_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="was edited"):
        check_folder_protocol(tmp_path, [])


def test_sample_rejects_bad_generate_output(tmp_path):
    jobs = suite_jobs(SUITE, dimensions=["scene"], num_seeds=1)[:2]

    def bad(prompts, seeds):
        return torch.rand(1, 5, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    with pytest.raises(ValueError, match=r"shape \(1, 5, 3, 8, 8\) for 2 prompts"):
        sample_jobs(bad, jobs, tmp_path, protocol=_protocol(), dimensions=["scene"], fps=8, batch_size=2)
