"""The bridge to VBench's own evaluator: result-file parsing and merging on VBench's format, the
subprocess call (argument list, staging), and the end to end path tiny checkpoint -> `rfvideo sample
--suite vbench` -> `rfvideo vbench` -> `rfvideo vbench --official` (when .venv-vbench exists).

References: VBench 0.1.5's result format (``save_json(results_dict)`` with ``[score, [{"video_path",
"video_results", ...}]]`` per dimension, per-video imaging on 0..100, bools for human action),
``vbench_script_scores`` (cal_final_score.py), and VBench's own evaluator on the same folder.
Shape legend: b videos, F frames, H/W height/width.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import tiny_recipe_yaml
from rfvideo.cli import main
from rfvideo.eval.aggregate import ALL_DIMENSIONS, vbench_script_scores
from rfvideo.eval.official import (
    OURS,
    THEIRS,
    OfficialScore,
    format_report,
    merge_reports,
    parse_results,
    run_official,
    runner_command,
)
from rfvideo.eval.suite import EXTENDED_PROMPTS, FULL_INFO, ORIGINAL_PROMPTS, packaged_suite_dir

REPO = Path(__file__).resolve().parents[1]
VBENCH_PY = REPO / ".venv-vbench" / "bin" / "python"


def _vbench_results(path, root="/data/videos"):
    """A results file exactly as VBench's evaluate() saves it (save_json: json.dump, indent=4)."""
    data = {
        "temporal_flickering": [0.9712, [
            {"video_path": f"{root}/a cup-0.mp4", "video_results": 0.97},
            {"video_path": f"{root}/a cup-1.mp4", "video_results": 0.9724},
        ]],
        "imaging_quality": [0.5525, [{"video_path": f"{root}/a cup-0.mp4", "video_results": 55.25}]],
        "human_action": [0.5, [
            {"video_path": f"{root}/a man running-0.mp4", "video_results": True, "cor_num_per_video": 1},
            {"video_path": f"{root}/a man running-1.mp4", "video_results": False, "cor_num_per_video": 0},
        ]],
        "spatial_relationship": [0.25, [
            {"video_path": f"{root}/a cat left of a dog-0.mp4", "video_results": 0.25, "frame_results": [1]},
        ]],
    }  # fmt: skip
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4)
    return data


def test_parse_vbench_result_file(tmp_path):
    _vbench_results(tmp_path / "r_eval_results.json")
    got = parse_results(tmp_path / "r_eval_results.json")
    assert set(got) == {"temporal_flickering", "imaging_quality", "human_action", "spatial_relationship"}
    assert got["temporal_flickering"].score == 0.9712
    assert got["temporal_flickering"].per_video == {"a cup-0.mp4": 0.97, "a cup-1.mp4": 0.9724}
    assert got["imaging_quality"].per_video == {"a cup-0.mp4": pytest.approx(0.5525)}  # 0..100 -> 0..1
    assert got["human_action"].per_video == {"a man running-0.mp4": 1.0, "a man running-1.mp4": 0.0}


@pytest.mark.parametrize(
    "content, match",
    [
        ("{}", "not VBench results"),
        ('{"color": 0.3}', "'color' is not \\[score, per-video list\\]"),
        ('{"color": [0.3, [{"video_path": "x-0.mp4"}]]}', "lacks video_path / video_results"),
        ('{"colour": [0.3, []]}', "unknown VBench dimension 'colour'"),
        ('{"color": ["high", []]}', "expected a number"),
        ("not json", "cannot read VBench results"),
    ],
)
def test_parse_rejects_malformed_files(tmp_path, content, match):
    (tmp_path / "r.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        parse_results(tmp_path / "r.json")


def test_merge_labels_sources_and_aggregates_each_side():
    g = torch.Generator().manual_seed(0)
    theirs = {d: OfficialScore(d, 0.2 + 0.6 * float(torch.rand(1, generator=g))) for d in ALL_DIMENSIONS}
    ours = {"dimensions": {
        "temporal_flickering": {"score": theirs["temporal_flickering"].score - 1e-3, "per_video": {}},
        "subject_consistency": {"score": 0.9, "per_video": {}},
    }}  # fmt: skip
    rep = merge_reports(ours, theirs)
    assert rep["sources"] == {"ours": OURS, "vbench": THEIRS}
    assert rep["dimensions"]["temporal_flickering"]["diff"] == pytest.approx(1e-3)
    assert rep["dimensions"]["color"]["ours"] is None
    q, s, t = vbench_script_scores({d: v.score for d, v in theirs.items()})
    assert rep["aggregate"]["vbench"]["total"] == pytest.approx(t)
    assert rep["aggregate"]["vbench"]["quality"] == pytest.approx(q)
    assert rep["aggregate"]["vbench"]["label"] == "VBench Total (16/16 dimensions)"
    assert rep["aggregate"]["ours"]["label"].startswith("subset of 2/16")
    text = format_report(rep)
    assert "VBench Total (16/16 dimensions)" in text and "subset of 2/16" in text


def test_runner_command_is_an_argument_list():
    cmd = runner_command("py", "/v/a b; rm -rf x", "/i.json", "/o", ["temporal_flickering", "color"])
    assert cmd[0] == "py" and cmd[1].endswith("vbench_runner.py")
    assert "/v/a b; rm -rf x" in cmd  # one argument, never interpreted by a shell
    assert cmd[cmd.index("--dimensions") + 1 :] == ["temporal_flickering", "color"]


def test_run_official_stages_only_videos_and_parses(tmp_path, monkeypatch):
    videos = tmp_path / "v"
    videos.mkdir()
    for name in ("a cup-0.mp4", "a cup-1.mp4", "protocol.json", "notes.txt"):
        (videos / name).write_bytes(b"x")
    fake_py = tmp_path / "python"
    fake_py.write_text("")
    seen = {}

    def fake_run(cmd, env, capture_output, text, timeout, check):
        seen["cmd"], seen["env"] = cmd, env
        staged = Path(cmd[cmd.index("--videos") + 1])
        seen["staged"] = sorted(p.name for p in staged.iterdir())
        _vbench_results(Path(cmd[cmd.index("--output") + 1]) / "rfvideo_eval_results.json", str(staged))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    got = run_official(videos, ["temporal_flickering"], python=fake_py, cache_dir=tmp_path / "cache")
    assert seen["staged"] == ["a cup-0.mp4", "a cup-1.mp4"]  # VBench takes the suffix of the first entry
    assert "PYTHONPATH" not in seen["env"] and seen["env"]["VBENCH_CACHE_DIR"] == str(tmp_path / "cache")
    assert got["temporal_flickering"].per_video["a cup-1.mp4"] == 0.9724

    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "Traceback ...\nNotImplementedError: UnImplemented")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="exited with 1:\nTraceback ...\nNotImplementedError"):
        run_official(videos, ["color"], python=fake_py)
    with pytest.raises(FileNotFoundError, match="make vbench-env"):
        run_official(videos, ["color"], python=tmp_path / "nope")


# ---- end to end: a tiny checkpoint through both commands ----------------------------------------------


def _tiny_config(path: Path, latent_frames: int = 4) -> Path:
    """A tiny real recipe config (16x32 pixels): what `rfvideo sample --config` builds its pipeline from."""
    path.write_text(tiny_recipe_yaml(latent_frames=latent_frames, latent_size=(2, 4)))
    return path


def _tiny_checkpoint(path: Path, seed: int) -> Path:
    """A recipe checkpoint (`state_dict` with `generator.*`) of the tiny generator with its own weights."""
    from rfvideo.models.tiny import tiny_causal_wan

    gen = tiny_causal_wan(num_frames_per_chunk=2, seed=seed, init_scale=0.3)
    torch.save({"state_dict": {f"generator.{k}": v for k, v in gen.state_dict().items()}}, path)
    return path


def _mini_suite(root: Path, per_dim: int = 2) -> Path:
    """A real-prompt subset of the shipped suite: the first prompts of two dimensions, files aligned."""
    src = packaged_suite_dir()
    items = json.loads((src / FULL_INFO).read_text())
    keep = []
    for d in ("temporal_flickering", "subject_consistency"):
        keep += [it for it in items if d in it["dimension"]][:per_dim]
    root.mkdir()
    (root / FULL_INFO).write_text(json.dumps(keep))
    orig = (src / ORIGINAL_PROMPTS).read_text().splitlines()
    ext = (src / EXTENDED_PROMPTS).read_text().splitlines()
    lines = [k for k, p in enumerate(orig) if p in {it["prompt_en"] for it in keep}]
    (root / ORIGINAL_PROMPTS).write_text("\n".join(orig[k] for k in lines) + "\n")
    (root / EXTENDED_PROMPTS).write_text("\n".join(ext[k] for k in lines) + "\n")
    return root


def _tiny_dino(path: Path) -> Path:
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                    image_size=224, patch_size=16)  # fmt: skip
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return path


def test_checkpoint_to_sample_to_vbench(tmp_path, capsys):
    suite = _mini_suite(tmp_path / "suite")
    config = _tiny_config(tmp_path / "tiny.yaml")
    _tiny_checkpoint(tmp_path / "tiny.ckpt", seed=7)
    out = tmp_path / "videos"
    argv = ["sample", "--suite", "vbench", "--config", str(config), "--ckpt", str(tmp_path / "tiny.ckpt"),
            "--out", str(out), "--suite-dir", str(suite), "--num-seeds", "2", "--extended", "--fps", "8",
            "--dimensions", "temporal_flickering", "subject_consistency", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    names = sorted(p.name for p in out.glob("*.mp4"))
    items = json.loads((suite / FULL_INFO).read_text())
    assert names == sorted(f"{it['prompt_en']}-{i}.mp4" for it in items for i in range(2))
    proto = json.loads((out / "protocol.json").read_text())
    p = proto["protocol"]
    assert p["extended_prompts"]["name"] == EXTENDED_PROMPTS and p["num_seeds"] == 2 and p["fps"] == 8
    assert p["checkpoint"]["name"] == "tiny.ckpt" and len(p["checkpoint"]["sha256"]) == 64
    assert set(proto["dimensions"]) == {"temporal_flickering", "subject_consistency"}
    assert main(argv) == 0 and "wrote 0, kept 8 of 8" in capsys.readouterr().out  # resumed: nothing to do
    # Another checkpoint into the same folder is refused (one line, exit 2).
    _tiny_checkpoint(tmp_path / "other.ckpt", seed=8)
    bad = [a if a != str(tmp_path / "tiny.ckpt") else str(tmp_path / "other.ckpt") for a in argv]
    assert main(bad) == 2
    assert "another sampling protocol" in capsys.readouterr().err

    # Scoring a suite folder without its prompt file would score every video on every dimension.
    assert main(["vbench", "--videos", str(out), "--no-progress"]) == 2
    assert "sampled from a prompt file other than rfvideo's VBench suite" in capsys.readouterr().err
    dino = _tiny_dino(tmp_path / "dino")
    scores = tmp_path / "scores.json"
    assert main(["vbench", "--videos", str(out), "--dimensions", "temporal_flickering", "subject_consistency",
                 "--backbone", f"subject_consistency={dino}", "--full-info", str(suite / FULL_INFO),
                 "--out", str(scores), "--no-progress"]) == 0  # fmt: skip
    got = json.loads(scores.read_text())
    tf = got["dimensions"]["temporal_flickering"]
    assert tf["num_videos"] == 4 and all(n.startswith("In a still frame") or "frozen" in n or "still" in n
                                         for n in tf["per_video"])  # fmt: skip
    assert 0 < got["dimensions"]["subject_consistency"]["score"] <= 1
    assert got["protocol"]["protocol_id"] == proto["protocol_id"]

    if not VBENCH_PY.is_file():
        pytest.skip("no .venv-vbench (make vbench-env): the official half needs it")
    off = tmp_path / "official.json"
    assert main(["vbench", "--videos", str(out), "--dimensions", "temporal_flickering", "--official",
                 "--full-info", str(suite / FULL_INFO), "--vbench-python", str(VBENCH_PY),
                 "--out", str(off), "--no-progress"]) == 0  # fmt: skip
    res = json.loads(off.read_text())
    row = res["comparison"]["dimensions"]["temporal_flickering"]
    assert row["vbench"] == pytest.approx(tf["score"], abs=1e-4)  # VBench's own code, same files
    assert row["max_per_video_diff"] < 1e-4
    assert set(res["vbench"]["temporal_flickering"]["per_video"]) == set(tf["per_video"])
    text = capsys.readouterr().out
    assert OURS in text and THEIRS in text


def test_sample_usage_errors(tmp_path, capsys):
    config = _tiny_config(tmp_path / "tiny.yaml")
    base = ["sample", "--config", str(config), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*base, "--dimensions", "colour"]) == 2
    assert "unknown VBench dimension 'colour'" in capsys.readouterr().err
    assert main([*base, "--suite-dir", str(tmp_path)]) == 2
    assert "no VBench_full_info.json" in capsys.readouterr().err
    assert main(["vbench", "--videos", str(tmp_path), "--dimensions", "color"]) == 2
    assert "need VBench's evaluator: add --official" in capsys.readouterr().err


@pytest.mark.slow  # two more LightningCLI builds; the shard invariant itself runs in test_eval_suite
def test_sample_shards_over_torchrun_ranks(tmp_path, monkeypatch, capsys):
    suite = _mini_suite(tmp_path / "suite")
    config = _tiny_config(tmp_path / "tiny.yaml", latent_frames=2)
    out = tmp_path / "videos"
    argv = ["sample", "--config", str(config), "--out", str(out), "--suite-dir", str(suite),
            "--num-seeds", "3", "--no-progress"]  # fmt: skip
    written = []
    for rank in (0, 1):  # what torchrun sets for each of its 2 processes
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        before = set(out.glob("*.mp4")) if out.exists() else set()
        assert main(argv) == 0
        written.append(set(out.glob("*.mp4")) - before)
    assert "rank 0/2: wrote 6" in capsys.readouterr().out
    items = json.loads((suite / FULL_INFO).read_text())
    assert not written[0] & written[1]  # disjoint
    assert {p.name for p in written[0] | written[1]} == {
        f"{it['prompt_en']}-{i}.mp4" for it in items for i in range(3)
    }
