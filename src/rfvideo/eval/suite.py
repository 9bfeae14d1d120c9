"""VBench's standard prompt suite as sampling jobs: prompts, per-video seeds, file names, rank shards.

The suite is ``VBench_full_info.json`` (946 entries, 944 distinct prompts, each tagged with the dimensions
it serves). A job is one video: ``(prompt, i)`` saved as ``{prompt}-{i}.mp4``, the name VBench's
standard evaluation looks up (``f"{prompt_en}-{i}{suffix}"`` for i in 0..4, no sanitising, vbench 0.1.5
``VBench.build_full_info_json``), always under the *original* prompt even when the video is generated
from the Wan2.1-extended prompt (``all_dimension_aug_wanx_seed42.txt``, line-aligned with
``all_dimension.txt``). The seed of a job depends only on the prompt's place in the whole suite and on
``i`` (``base_seed + suite_index * num_seeds + i``), so a per-dimension subset samples exactly the videos
the full run would.

Shape legend: b videos, F pixel frames, H/W pixel height/width.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rfvideo.eval.aggregate import canonical_dimension
from rfvideo.eval.folder import load_full_info

FULL_INFO = "VBench_full_info.json"
ORIGINAL_PROMPTS = "all_dimension.txt"
EXTENDED_PROMPTS = "all_dimension_aug_wanx_seed42.txt"
VBENCH_NUM_SEEDS = 5
MAX_FILENAME_BYTES = 255  # ext4 / most file systems


def packaged_suite_dir() -> Path:
    """The copy of VBench's suite files shipped with rfvideo (``rfvideo/eval/data/vbench``)."""
    return Path(__file__).with_name("data") / "vbench"


@dataclass(frozen=True)
class SuiteJob:
    """One video of the suite.

    Attributes:
        prompt: the original VBench prompt (names the file; what scoring reads).
        gen_prompt: the prompt the model is given (the extended one when asked for).
        index: the video's index ``i`` among the prompt's seeds.
        seed: the generator seed.
        suite_index: the prompt's place in the whole suite.
        dimensions: the VBench dimensions the prompt serves.
    """

    prompt: str
    gen_prompt: str
    index: int
    seed: int
    suite_index: int
    dimensions: tuple[str, ...]

    @property
    def filename(self) -> str:
        return vbench_filename(self.prompt, self.index)


def vbench_filename(prompt: str, index: int, suffix: str = ".mp4") -> str:
    """``{prompt}-{index}.mp4``, VBench's name (the prompt is used verbatim, as VBench looks it up).

    Raises:
        ValueError: the prompt cannot be a file name (empty, a path separator or NUL in it, or the name
            longer than 255 bytes in UTF-8).
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"video index must be a non-negative int, got {index!r}")
    if not prompt or prompt != prompt.strip():
        raise ValueError(f"prompt {prompt!r} is empty or has surrounding whitespace")
    bad = [c for c in ("/", "\\", "\0") if c in prompt]
    if bad:
        raise ValueError(f"prompt {prompt!r} contains {bad[0]!r}, which cannot be in a file name")
    name = f"{prompt}-{index}{suffix}"
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise ValueError(f"file name for prompt {prompt[:40]!r}... is over {MAX_FILENAME_BYTES} bytes")
    return name


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e})") from e
    return [line.strip() for line in text.splitlines()]


def extended_prompt_map(original: str | os.PathLike, extended: str | os.PathLike) -> dict[str, str]:
    """``{original prompt: extended prompt}`` from two line-aligned files.

    Raises:
        ValueError: the files have different line counts, or a prompt listed twice is extended two ways.
    """
    orig, ext = _read_lines(Path(original)), _read_lines(Path(extended))
    orig = orig[: len(orig) - next((i for i, s in enumerate(reversed(orig)) if s), 0)]
    ext = ext[: len(ext) - next((i for i, s in enumerate(reversed(ext)) if s), 0)]
    if len(orig) != len(ext):
        raise ValueError(f"{extended}: {len(ext)} prompts, but {original} has {len(orig)}: not line-aligned")
    out: dict[str, str] = {}
    for n, (o, e) in enumerate(zip(orig, ext), start=1):
        if not o or not e:
            raise ValueError(f"line {n}: empty prompt in {original if not o else extended}")
        if out.setdefault(o, e) != e:
            # VBench's list repeats two prompts; their extensions may differ: the first line wins, as
            # the file's first occurrence is the one a sequential sampler would use.
            continue
    return out


def suite_prompts(full_info: str | os.PathLike) -> list[tuple[str, tuple[str, ...]]]:
    """Distinct prompts of VBench_full_info.json in file order, each with the union of its dimensions."""
    merged: dict[str, list[str]] = {}
    for it in load_full_info(full_info):
        dims = merged.setdefault(it["prompt_en"], [])
        dims += [d for d in it.get("dimension", ()) if d not in dims]
    return [(p, tuple(d)) for p, d in merged.items()]


def suite_jobs(
    suite_dir: str | os.PathLike,
    *,
    dimensions: Sequence[str] | None = None,
    num_seeds: int = VBENCH_NUM_SEEDS,
    base_seed: int = 0,
    extended: bool = False,
) -> list[SuiteJob]:
    """Every video of the suite (or of the prompts of ``dimensions``), in a fixed order.

    Args:
        suite_dir: folder holding VBench_full_info.json (and the prompt lists for ``extended``).
        dimensions: keep prompts tagged with any of these (None: all 16 dimensions).
        num_seeds: videos per prompt (VBench: 5; its evaluator reads indices 0-4 only).
        base_seed: first seed.
        extended: generate from the Wan2.1-extended prompts (files keep the original prompt).
    """
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"num_seeds must be a positive int, got {num_seeds!r}")
    root = Path(suite_dir)
    if not (root / FULL_INFO).is_file():
        raise FileNotFoundError(f"no {FULL_INFO} in {root}")
    wanted = None if dimensions is None else {canonical_dimension(d) for d in dimensions}
    if wanted is not None and not wanted:
        raise ValueError("dimensions is empty")
    ext_map = extended_prompt_map(root / ORIGINAL_PROMPTS, root / EXTENDED_PROMPTS) if extended else {}
    jobs = []
    for k, (prompt, dims) in enumerate(suite_prompts(root / FULL_INFO)):
        if wanted is not None and not wanted & set(dims):
            continue
        if extended and prompt not in ext_map:
            raise ValueError(f"prompt {prompt!r} has no extended version in {EXTENDED_PROMPTS}")
        gen = ext_map[prompt] if extended else prompt
        for i in range(num_seeds):
            jobs.append(SuiteJob(prompt, gen, i, base_seed + k * num_seeds + i, k, dims))
            vbench_filename(prompt, i)  # fail now, not after hours of sampling
    if not jobs:
        raise ValueError(f"no prompt in {root / FULL_INFO} serves dimensions {sorted(wanted or ())}")
    return jobs


def shard(jobs: Sequence[SuiteJob], rank: int, world_size: int) -> list[SuiteJob]:
    """Rank ``rank``'s disjoint share: every ``world_size``-th job from ``rank`` (together: all jobs)."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
    return list(jobs[rank::world_size])


def dist_env(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's RANK / WORLD_SIZE (``(0, 1)`` when not launched by it)."""
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    except ValueError as e:
        raise ValueError(f"RANK / WORLD_SIZE must be integers, got {env.get('RANK')!r} / "
                         f"{env.get('WORLD_SIZE')!r}") from e  # fmt: skip
    shard([], rank, world)  # validates the pair
    return rank, world
