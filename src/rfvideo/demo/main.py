"""`make demo` (`python -m rfvideo.demo`): the whole Reward-Forcing recipe offline on the CPU.

World: coloured squares crossing a grey frame in named directions ("a red square moving left"); 24 prompts,
6 held out (unseen colour x direction pairs). The world's reward (`demo.world.reward.SquareWorldReward`)
scores one frame: the prompt's colour, the world's square size, and a composition term preferring the
square at the frame centre, a place the clips' motion passes through and leaves.

  world     codec (`KeyframeCodec`), text encoder (word-level tiny umT5), training clips as latent shards;
  stage 0   tiny bidirectional Wan base by flow matching (the "pretrained" model);
  stage 1   ODE trajectories of the base -> ODE init of the causal student (`ODEInitModule`);
  stage 2   reward forcing (`RewardForcingModule`), world reward on the last frame; the paper's ablation
            (all frames) and a reward-hacking control (colour only);
  report    held-out table, a labelled PNG grid of frames, TensorBoard (grid, sample GIFs per model,
            held-out scalars per stage, the table as text), and this run's differences beside the committed
            claims of docs/demo_results.md ("k of N claims within the range another machine sees").

Claims are made across worlds: the world seed draws the base model and its trajectories, which another
machine redraws (its CPU kernels sum floats in another order), so a spread over training seeds on one base
says nothing about another machine. The claims run:

    python -m rfvideo.demo --worlds 0 1 2 3 4 --seeds 0 1 --write-readme-tables docs/demo_results.md

or as separate processes on disjoint worlds (`--worlds 0 1 2 --out A`, `--worlds 3 4 --out B`), merged with
`--merge A/results.json B/results.json --write-readme-tables docs/demo_results.md`. Each finished (world,
seed) run is on disk (`<out>/world<w>/seed<s>/rows.json`); the same command resumes a cut run there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = Path(__file__).resolve().parents[3] / "docs" / "demo_results.md"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rfvideo.demo", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", default="outputs/demo", help="output folder (tables, grid, TensorBoard, caches)")
    p.add_argument(
        "--worlds", type=int, nargs="+", default=[0],
        help="world seeds (the base model and its trajectories: what another machine redraws)",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (stage 1 and 2)")
    p.add_argument("--eval-seeds", type=int, default=None, help="evaluation seeds per held-out prompt")
    p.add_argument("--fast", action="store_true", help="a few steps everywhere (smoke test, not meaningful)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 avoids contention)")
    for name in ("base-steps", "ode-steps", "reward-steps"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--write-readme-tables", default=None, metavar="PATH", help="write tables and claims here")
    p.add_argument(
        "--claims",
        default=None,
        help=f"results file whose claims this run checks (default {DEFAULT_RESULTS})",
    )
    p.add_argument(
        "--merge", nargs="+", default=None, metavar="RESULTS_JSON",
        help="no training: merge the results.json of runs on disjoint (world, seed) pairs into one table",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--strict-claims", action="store_true",
        help="exit 1 when this run lies outside a stored claim's run range (default: print the summary only; "
        "a disagreement on another machine is information, not a failed install)",
    )  # fmt: skip
    return p


def _check_distinct(name: str, xs: list[int]) -> None:
    if len(set(xs)) != len(xs) or min(xs) < 0:
        raise ValueError(f"--{name} must be distinct non-negative ints, got {xs}")


def comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings two results must share to be compared or merged: all but the world seed."""
    return {k: v for k, v in settings.items() if k != "world_seed"}


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0, or 1 with `--strict-claims` when this run lies outside a claim's range."""
    a = _parser().parse_args(argv)
    for name in ("eval_seeds", "base_steps", "ode_steps", "reward_steps", "threads"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    _check_distinct("seeds", a.seeds)
    _check_distinct("worlds", a.worlds)

    import torch

    if a.merge:
        return _merge(a.merge, a.write_readme_tables)

    from rfvideo.demo import evaluate as ev
    from rfvideo.demo import report, stages
    from rfvideo.demo.settings import DemoSettings
    from rfvideo.demo.tensorboard import log_run, log_table

    torch.set_num_threads(a.threads)
    stages.quiet_lightning()
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    s = DemoSettings.fast() if a.fast else DemoSettings()
    changes = {k: getattr(a, k) for k in ("eval_seeds", "base_steps", "ode_steps", "reward_steps")}
    s = s.replace(**{k: v for k, v in changes.items() if v is not None})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not a.quiet
    single = len(a.worlds) == 1 and len(a.seeds) == 1
    meta = {"settings": comparable(s.__dict__), "worlds": a.worlds, "seeds": a.seeds,
            "eval_seeds": s.eval_seeds, "torch": torch.__version__}  # fmt: skip

    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    reference: dict[str, dict[str, float]] = {}
    first = True
    for w in a.worlds:
        sw = s.replace(world_seed=w)
        world = stages.build_world(sw, out)
        n = f"{len(world.train_specs)} training prompts x {sw.clips_per_prompt} clips"
        log(f"world {w}: {n} -> {world.cache}")
        base, info = stages.train_base(world, progress=progress)
        if "cached" in info:
            log(f"world {w} stage 0: base loaded from cache")
        else:
            loss = f"{info['loss_first']:.4f} -> {info['loss_last']:.4f}"
            log(f"world {w} stage 0: base trained {sw.base_steps} steps, loss {loss}")
        traj_dir = stages.make_trajectories(world, base)
        log(f"world {w} stage 1 data: ODE trajectories -> {traj_dir}")

        prompts = [sp.prompt for sp in world.held_specs]
        clips = ev.clip_videos(world)
        if not reference:
            recon = world.vae.decode(world.vae.encode(clips))
            reference = {
                "the procedural clips": ev.evaluate_videos(world, clips, prompts),
                "their codec reconstruction": ev.evaluate_videos(world, recon, prompts),
            }
        results[str(w)] = {}
        for seed in a.seeds:
            run_out = out if single else out / f"world{w}" / f"seed{seed}"
            done = run_out / "rows.json"
            if done.is_file() and json.loads(done.read_text()).get("settings") == comparable(sw.__dict__):
                # a cut multi-world run resumes here: this (world, seed) is already on disk
                results[str(w)][str(seed)] = json.loads(done.read_text())["rows"]
                log(f"world {w} seed {seed}: loaded from {done}")
                first = False
                continue
            root = out if first else None
            rows, videos = _train_and_evaluate(world, base, traj_dir, seed, run_out, root, progress, log)
            first = False
            results[str(w)][str(seed)] = rows
            log_run(run_out / "tensorboard", rows, videos, clips, prompts, world.settings)
            grid_rows = {report.ROWS[k]: v for k, v in videos.items()} | {"the clips": clips}
            ev.save_grid(run_out / "grid.png", grid_rows, [0, 1], prompts=prompts)
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps({"settings": comparable(sw.__dict__), "rows": rows}, indent=1))
            _write(out, results, reference, meta)  # partial results: a cut session loses one run at most

    table = _write(out, results, reference, meta)
    log_table(out / "tensorboard", table.split("<!--")[0])
    print("\n" + table.split("<!--")[0])
    if a.write_readme_tables:
        Path(a.write_readme_tables).parent.mkdir(parents=True, exist_ok=True)
        Path(a.write_readme_tables).write_text(table)
        log(f"tables and claims written to {a.write_readme_tables}")

    status = 0
    claims_path = Path(a.claims or DEFAULT_RESULTS)
    if a.fast and a.claims is None:
        print("claims: not checked (--fast numbers mean nothing; pass --claims to check anyway)")
    elif claims_path.is_file() and not a.write_readme_tables:
        status = _check(report, claims_path, meta, results, a.strict_claims)
    elif not a.write_readme_tables:
        print(f"claims: {claims_path} not found (write it with --write-readme-tables)")
    print(f"grid:        {out / 'grid.png' if single else out / 'world*/seed*/grid.png'}")
    print(f"TensorBoard: python -m tensorboard.main --logdir {out}")
    print(f"table:       {out / 'results.md'}")
    log("demo finished; total time")
    return status


def _train_and_evaluate(
    world: Any,
    base: Any,
    traj_dir: Path,
    seed: int,
    run_out: Path,
    root: Path | None,
    progress: bool,
    log: Any,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Stage 1 and the three stage-2 runs of one training seed, each evaluated on the held-out prompts.
    With `root` (the command's first run) it also leaves the stage-1 generator
    (`<root>/stage1/generator.safetensors`, what experiments/demo/*.yaml start from) and the stage-2 pipeline
    (`<root>/pipeline`)."""
    from rfvideo.demo import evaluate as ev
    from rfvideo.demo import stages

    w = world.settings.world_seed
    rows: dict[str, dict[str, float]] = {}
    videos = {}
    stage1, info = stages.ode_init(world, base, traj_dir, seed=seed, out=run_out, progress=progress)
    rows["stage1"], videos["stage1"] = ev.evaluate_model(world, stage1)
    log(f"world {w} seed {seed} stage 1: loss {info['loss_first']:.4f} -> {info['loss_last']:.4f}; "
        f"held-out world reward {rows['stage1']['reward_last']:.3f}")  # fmt: skip
    if root is not None:
        path = stages.save_generator(stage1.generator, root / "stage1" / "generator.safetensors")
        log(f"stage 1 generator saved for `rfvideo fit --config experiments/demo/*.yaml` ({path})")
    for run in stages.REWARD_RUNS:
        module, info = stages.reward_forcing(world, stage1, run, seed=seed, out=run_out, progress=progress)
        rows[run], videos[run] = ev.evaluate_model(world, module)
        if run == "stage2_last_frame" and root is not None:
            folder = stages.export_pipeline(module, root / "pipeline")
            log(f"world {w} seed {seed} {run}: exported the pipeline for `rfvideo generate|serve --demo` "
                f"({folder})")  # fmt: skip
        trained = f"training reward {info['reward_first']:.3f} -> {info['reward_last']:.3f}; " if info else ""
        log(f"world {w} seed {seed} {run}: {trained}held-out world reward {rows[run]['reward_last']:.3f}, "
            f"motion {rows[run]['motion']:.2f} px/frame, shape {rows[run]['shape']:.3f}")  # fmt: skip
    return rows, videos


def _write(out: Path, results: dict[str, Any], reference: dict[str, Any], meta: dict[str, Any]) -> str:
    from rfvideo.demo import report

    table = report.render_results(results, reference, meta=meta)
    (out / "results.md").write_text(table)
    blob = {"meta": meta, "results": results, "reference": reference}
    (out / "results.json").write_text(json.dumps(blob, indent=1, sort_keys=True))
    return table


def _check(
    report: Any, claims_path: Path, meta: dict[str, Any], results: dict[str, Any], strict: bool
) -> int:
    """Print this run's differences beside the committed claims and the summary; 1 when `strict` and one
    lies outside the range another machine sees."""
    stored = report.read_results(claims_path)
    if comparable(stored["meta"].get("settings", {})) != meta["settings"]:
        # numbers from other step counts or sizes are not comparable: say so instead of a verdict
        print(f"claims: {claims_path} was made with other settings; not compared")
        return 0
    if not any(c.get("range") for c in stored["claims"]):
        print(f"claims: {claims_path} holds no across-world ranges (older protocol); not compared")
        return 0
    print(f"\nThis run against the committed claims of {claims_path} (one run: its differences, no verdict):")
    status = 0
    for w, seeds in results.items():
        for seed, rows in seeds.items():
            checked = report.check_claims(stored, rows)
            for _cid, _ok, line in checked:
                print(f"  [world {w} seed {seed}] {line}")
            k = sum(ok for _, ok, _ in checked)
            print(f"world {w} seed {seed}: {k} of {len(checked)} claims within the range another machine sees"
                  + ("" if k == len(checked) else " (outside: this machine's base differs more than the "
                     "committed worlds did; see docs/demo_results.md)"))  # fmt: skip
            if strict and k < len(checked):
                status = 1
    return status


def _merge(paths: list[str], write_to: str | None) -> int:
    """Render one table from the `results.json` of runs on disjoint (world, training seed) pairs."""
    from rfvideo.demo import report

    blobs = [json.loads(Path(p).read_text()) for p in paths]
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for p, b in zip(paths, blobs, strict=True):
        if comparable(b["meta"]["settings"]) != comparable(blobs[0]["meta"]["settings"]):
            raise ValueError(f"{p} was run with other settings than {paths[0]}")
        for w, seeds in b["results"].items():
            clash = set(results.get(w, {})) & set(seeds)
            if clash:
                raise ValueError(f"{p} repeats world {w} training seeds {sorted(clash)}")
            results.setdefault(w, {}).update(seeds)
    worlds = sorted(int(w) for w in results)
    seeds = sorted({int(s) for w in results.values() for s in w})
    meta = dict(blobs[0]["meta"], worlds=worlds, seeds=seeds)
    table = report.render_results(results, blobs[0]["reference"], meta=meta)
    print(table.split("<!--")[0])
    if write_to:
        Path(write_to).parent.mkdir(parents=True, exist_ok=True)
        Path(write_to).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
