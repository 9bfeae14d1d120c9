"""Bridge to VBench's own evaluator: run it in the isolated environment, read its result files, merge.

``run_official(videos_dir, dimensions, python=".venv-vbench/bin/python")`` stages the folder's mp4 files
(symlinks in a temporary folder: VBench takes the file suffix from the *first* directory entry, so a
``protocol.json`` beside the videos would hide them), runs ``vbench_runner.py`` with an argument list (never
a shell string), and parses ``{name}_eval_results.json``. ``merge_reports`` puts VBench's numbers beside
rfvideo's and aggregates each side with VBench's constants; every number says whose code computed it.

VBench's per-video results are on each dimension's own scale except imaging quality, whose per-video
MUSIQ scores stay on 0..100 (its dataset score is / 100); ``parse_results`` rescales them to 0..1.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfvideo.eval.aggregate import ALL_DIMENSIONS, aggregate_scores, canonical_dimension, vbench_script_scores

OURS = "rfvideo (in-loop code)"
THEIRS = "VBench 0.1.5 (official code)"
PER_VIDEO_SCALE = {"imaging_quality": 0.01}
DEFAULT_PYTHON = ".venv-vbench/bin/python"


@dataclass
class OfficialScore:
    """One dimension as VBench's evaluator reported it.

    Attributes:
        dimension: VBench key.
        score: VBench's dataset score.
        per_video: ``{file name: score}`` on the dimension's 0..1 scale.
    """

    dimension: str
    score: float
    per_video: dict[str, float] = field(default_factory=dict)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    raise ValueError(f"{where}: expected a number, got {type(value).__name__} {value!r:.60}")


def parse_results(path: str | os.PathLike) -> dict[str, OfficialScore]:
    """Read VBench's ``*_eval_results.json``: ``{dimension: [score, [{"video_path", "video_results"}]]}``.

    Raises:
        ValueError: the file is not in VBench's result format (names the file and the entry).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: cannot read VBench results ({e})") from e
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{p}: not VBench results (expected {{dimension: [score, per-video list]}})")
    out = {}
    for name, entry in data.items():
        d = canonical_dimension(name)
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
            raise ValueError(f"{p}: entry {name!r} is not [score, per-video list]")
        scale = PER_VIDEO_SCALE.get(d, 1.0)
        per_video = {}
        for k, r in enumerate(entry[1]):
            if not isinstance(r, dict) or "video_path" not in r or "video_results" not in r:
                raise ValueError(f"{p}: {name!r} per-video entry {k} lacks video_path / video_results")
            per_video[Path(r["video_path"]).name] = scale * _number(r["video_results"], f"{p}: {name!r}[{k}]")
        out[d] = OfficialScore(d, _number(entry[0], f"{p}: {name!r} score"), per_video)
    return out


def _stage(videos_dir: Path, into: Path) -> int:
    n = 0
    for f in sorted(videos_dir.iterdir()):
        if f.suffix.lower() == ".mp4" and f.is_file():
            (into / f.name).symlink_to(f.resolve())
            n += 1
    if n == 0:
        raise ValueError(f"no .mp4 files in {videos_dir}")
    return n


def runner_command(
    python: str | os.PathLike,
    videos: str | os.PathLike,
    full_info: str | os.PathLike,
    output: str | os.PathLike,
    dimensions: Sequence[str],
    *,
    name: str = "rfvideo",
    device: str = "cpu",
    local: bool = False,
) -> list[str]:
    """The argument list that runs VBench's evaluator (no shell; every value is one argument)."""
    cmd = [os.fspath(python), str(Path(__file__).with_name("vbench_runner.py"))]
    cmd += ["--videos", os.fspath(videos), "--full-info", os.fspath(full_info), "--output", os.fspath(output)]
    cmd += ["--name", name, "--device", device, "--dimensions", *dimensions]
    return cmd + (["--local"] if local else [])


def run_official(
    videos_dir: str | os.PathLike,
    dimensions: Sequence[str],
    *,
    python: str | os.PathLike = DEFAULT_PYTHON,
    full_info: str | os.PathLike | None = None,
    device: str = "cpu",
    output_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    local: bool = False,
    timeout: float | None = None,
) -> dict[str, OfficialScore]:
    """Score ``videos_dir`` with VBench's own ``VBench.evaluate`` in the isolated environment.

    Args:
        videos_dir: folder of ``{prompt}-{i}.mp4`` (other files are left out of VBench's view).
        dimensions: any of the 16 VBench dimensions.
        python: the isolated environment's interpreter (``make vbench-env``).
        full_info: VBench_full_info.json (default: the copy shipped with rfvideo).
        device: VBench's device ("cpu", "cuda").
        output_dir: keep VBench's result files here (default: a temporary folder).
        cache_dir: VBench's weight cache (VBENCH_CACHE_DIR); the detector dimensions need their weights
            there (this machine cannot download them).
        local: VBench's ``load_ckpt_from_local``.
        timeout: seconds before the evaluator is stopped.

    Raises:
        FileNotFoundError: no such interpreter or folder.
        RuntimeError: VBench's evaluator failed (its last output lines are in the message).
    """
    from rfvideo.eval.suite import FULL_INFO, packaged_suite_dir

    dims = [canonical_dimension(d) for d in dimensions]
    if not dims:
        raise ValueError("run_official: no dimensions")
    py = Path(python)
    if not py.is_file():
        raise FileNotFoundError(f"VBench environment not found: {py} (build it with `make vbench-env`)")
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"videos_dir is not a directory: {root}")
    info = Path(full_info) if full_info is not None else packaged_suite_dir() / FULL_INFO
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the runner must see the isolated environment only
    if cache_dir is not None:
        env["VBENCH_CACHE_DIR"] = os.fspath(cache_dir)
    with tempfile.TemporaryDirectory(prefix="rfvideo-vbench-") as tmp:
        staged = Path(tmp) / "videos"
        staged.mkdir()
        _stage(root, staged)
        out = Path(output_dir) if output_dir is not None else Path(tmp) / "results"
        out.mkdir(parents=True, exist_ok=True)
        cmd = runner_command(py, staged, info, out, dims, device=device, local=local)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"VBench's evaluator exited with {proc.returncode}:\n{tail}")
        return parse_results(out / "rfvideo_eval_results.json")


def merge_reports(
    ours: Mapping[str, Any] | None, theirs: Mapping[str, OfficialScore] | None
) -> dict[str, Any]:
    """Both sides per dimension and per side Quality / Semantic / Total with VBench's constants.

    Args:
        ours: ``score_video_folder``'s result (or None).
        theirs: ``parse_results`` / ``run_official``'s result (or None).

    Returns:
        ``{"sources": {"ours": OURS, "vbench": THEIRS}, "dimensions": {dim: {"ours": x|None, "vbench":
        y|None, "diff": y - x|None, "max_per_video_diff": ...}}, "aggregate": {"ours": {...}, "vbench":
        {...}}}``; an aggregate over all 16 dimensions is VBench's Total, any other is labelled a subset.
    """
    ours_d = {k: v["score"] for k, v in (ours or {}).get("dimensions", {}).items()}
    ours_pv = {k: v.get("per_video", {}) for k, v in (ours or {}).get("dimensions", {}).items()}
    theirs_d = {k: v.score for k, v in (theirs or {}).items()}
    dims: dict[str, Any] = {}
    for d in ALL_DIMENSIONS:
        if d not in ours_d and d not in theirs_d:
            continue
        a, b = ours_d.get(d), theirs_d.get(d)
        row: dict[str, Any] = {"ours": a, "vbench": b, "diff": None, "max_per_video_diff": None}
        if a is not None and b is not None:
            row["diff"] = b - a
            common = set(ours_pv.get(d, {})) & set(theirs[d].per_video)  # type: ignore[index]
            if common:
                row["max_per_video_diff"] = max(
                    abs(ours_pv[d][n] - theirs[d].per_video[n])
                    for n in common  # type: ignore[index]
                )
        dims[d] = row
    agg: dict[str, Any] = {}
    for side, scores in (("ours", ours_d), ("vbench", theirs_d)):
        if not scores:
            continue
        a = aggregate_scores(scores)
        entry = {"quality": a.quality, "semantic": a.semantic, "total": a.total, "label": a.label}
        if a.complete:
            q, s, t = vbench_script_scores(scores)
            entry.update(quality=q, semantic=s, total=t)
        agg[side] = entry
    return {"sources": {"ours": OURS, "vbench": THEIRS}, "dimensions": dims, "aggregate": agg}


def format_report(report: Mapping[str, Any]) -> str:
    """A text table of ``merge_reports``' result (one row per dimension, then the aggregates)."""

    def f(x: float | None) -> str:
        return f"{x:.4f}" if isinstance(x, float) else "-"

    lines = [f"{'dimension':24s} {'rfvideo':>9s} {'VBench':>9s} {'diff':>9s}"]
    for d, r in report["dimensions"].items():
        lines.append(f"{d:24s} {f(r['ours']):>9s} {f(r['vbench']):>9s} {f(r['diff']):>9s}")
    lines.append(f"rfvideo = {OURS}; VBench = {THEIRS}")
    for side, name in (("ours", "rfvideo"), ("vbench", "VBench")):
        a = report["aggregate"].get(side)
        if a:
            parts = ", ".join(f"{k} {f(a[k])}" for k in ("quality", "semantic", "total") if a[k] is not None)
            lines.append(f"{name} aggregate ({a['label']}): {parts}")
    return "\n".join(lines)


def default_python() -> str:
    """The isolated interpreter: $RFVIDEO_VBENCH_PYTHON, else .venv-vbench/bin/python (cwd or repo)."""
    env = os.environ.get("RFVIDEO_VBENCH_PYTHON")
    if env:
        return env
    here = Path(DEFAULT_PYTHON)
    if here.is_file():
        return str(here)
    repo = Path(__file__).resolve().parents[3] / DEFAULT_PYTHON
    return str(repo if repo.is_file() else here)


__all__ = [
    "OURS",
    "THEIRS",
    "OfficialScore",
    "default_python",
    "format_report",
    "merge_reports",
    "parse_results",
    "run_official",
    "runner_command",
]
