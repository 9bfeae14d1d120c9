"""`make demo` (`python -m rfvideo.demo`): the whole Reward-Forcing recipe offline on the CPU.

World: coloured squares crossing a grey frame in named directions ("a red square moving left"); 24 prompts,
6 held out (unseen colour x direction pairs). The world's reward (`demo_world.reward.SquareWorldReward`)
scores one frame: the prompt's colour, the world's square size, and a composition term preferring the
square at the frame centre, a place the clips' motion passes through and leaves.

  world     codec (`KeyframeCodec`), text encoder (word-level tiny umT5), training clips as latent shards;
  stage 0   tiny bidirectional Wan base by flow matching (the "pretrained" model);
  stage 1   ODE trajectories of the base -> ODE init of the causal student (`ODEInitModule`);
  stage 2   reward forcing (`RewardForcingModule`), world reward on the last frame; the paper's ablation
            (all frames) and a reward-hacking control (colour only);
  report    held-out table, a PNG grid of frames (also in TensorBoard), and a check of this run against
            the claims of the committed multi-seed results file.

`python -m rfvideo.demo --seeds 0 1 2 3 4 --write-readme-tables docs/demo_results.md` runs several
training seeds on the same world and writes the tables and claims.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_RESULTS = Path(__file__).resolve().parents[3] / "docs" / "demo_results.md"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rfvideo.demo", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", default="outputs/demo", help="output folder (tables, grid, TensorBoard, caches)")
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
        help="no training: merge the results.json of runs on disjoint seeds into one table",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--strict-claims", action="store_true",
        help="exit 1 when this run disagrees with a stored claim (default: report the verdicts only; a "
        "disagreement on another machine is information, not a failed install)",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0, or 1 when `--claims` exists and this run disagrees with a finding."""
    a = _parser().parse_args(argv)
    for name in ("eval_seeds", "base_steps", "ode_steps", "reward_steps", "threads"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if len(set(a.seeds)) != len(a.seeds) or min(a.seeds) < 0:
        raise ValueError(f"--seeds must be distinct non-negative ints, got {a.seeds}")

    import torch

    if a.merge:
        return _merge(a.merge, a.write_readme_tables)

    from rfvideo.demo import evaluate as ev
    from rfvideo.demo import report, stages
    from rfvideo.demo.settings import DemoSettings

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

    world = stages.build_world(s, out)
    log(f"world: {len(world.train_specs)} training prompts x {s.clips_per_prompt} clips -> {world.cache}")
    base, info = stages.train_base(world, progress=progress)
    if "cached" in info:
        log("stage 0: base loaded from cache")
    else:
        loss = f"{info['loss_first']:.4f} -> {info['loss_last']:.4f}"
        log(f"stage 0: base trained {s.base_steps} steps, loss {loss}")
    traj_dir = stages.make_trajectories(world, base)
    log(f"stage 1 data: ODE trajectories -> {traj_dir}")

    prompts = [sp.prompt for sp in world.held_specs]
    clips = ev.clip_videos(world)
    recon = world.vae.decode(world.vae.encode(clips))
    reference = {
        "the procedural clips": ev.evaluate_videos(world, clips, prompts),
        "their codec reconstruction": ev.evaluate_videos(world, recon, prompts),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    for seed in a.seeds:
        seed_out = out if len(a.seeds) == 1 else out / f"seed{seed}"
        rows: dict[str, dict[str, float]] = {}
        videos = {}
        stage1, info = stages.ode_init(world, base, traj_dir, seed=seed, out=seed_out, progress=progress)
        rows["stage1"], videos["stage1"] = ev.evaluate_model(world, stage1)
        log(f"seed {seed} stage 1: loss {info['loss_first']:.4f} -> {info['loss_last']:.4f}; held-out "
            f"world reward {rows['stage1']['reward_last']:.3f}")  # fmt: skip
        for run in stages.REWARD_RUNS:
            module, info = stages.reward_forcing(
                world, stage1, run, seed=seed, out=seed_out, progress=progress
            )
            rows[run], videos[run] = ev.evaluate_model(world, module)
            if run == "stage2_last_frame" and seed == a.seeds[0]:
                folder = stages.export_pipeline(module, out / "pipeline")
                log(
                    f"seed {seed} {run}: exported the pipeline for `rfvideo generate|serve --demo` ({folder})"
                )
            trained = (
                f"training reward {info['reward_first']:.3f} -> {info['reward_last']:.3f}; " if info else ""
            )
            log(f"seed {seed} {run}: {trained}held-out world reward {rows[run]['reward_last']:.3f}, "
                f"motion {rows[run]['motion']:.2f} px/frame, shape {rows[run]['shape']:.3f}")  # fmt: skip
        results[str(seed)] = rows
        grid_rows = {report.ROWS[k]: v for k, v in videos.items()} | {"the clips": clips}
        img = ev.save_grid(seed_out / "grid.png", grid_rows, [0, 1])
        from lightning.pytorch.loggers import TensorBoardLogger

        tb = TensorBoardLogger(seed_out / "tensorboard", name="grid")
        tb.experiment.add_image("held_out/grid (rows: stage 1, stage 2, all frames, colour only, clips)", img)
        tb.experiment.flush()

    meta = {"settings": s.__dict__, "seeds": a.seeds, "eval_seeds": s.eval_seeds, "torch": torch.__version__}
    table = report.render_results(results, reference, meta=meta)
    (out / "results.md").write_text(table)
    blob = {"meta": meta, "results": results, "reference": reference}
    (out / "results.json").write_text(json.dumps(blob, indent=1, sort_keys=True))
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
        stored = report.read_results(claims_path)
        if stored["meta"].get("settings") != meta["settings"]:
            # numbers from other step counts or sizes are not comparable: say so instead of a verdict
            print(f"claims: {claims_path} was made with other settings; not compared")
        else:
            print(f"This run against the claims of {claims_path}:")
            for seed, rows in results.items():
                for _cid, ok, line in report.check_claims(stored, rows):
                    print(f"  [seed {seed}] {line}")
                    status = status if ok or not a.strict_claims else 1
    else:
        print(f"claims: {claims_path} not found (write it with --write-readme-tables)")
    print(f"grid:        {out / 'grid.png' if len(a.seeds) == 1 else out / 'seed*/grid.png'}")
    print(f"TensorBoard: python -m tensorboard.main --logdir {out}")
    print(f"table:       {out / 'results.md'}")
    log("demo finished; total time")
    return status


def _merge(paths: list[str], write_to: str | None) -> int:
    """Render one table from the `results.json` of runs on disjoint training seeds of the same world."""
    from rfvideo.demo import report

    blobs = [json.loads(Path(p).read_text()) for p in paths]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for p, b in zip(paths, blobs, strict=True):
        if b["meta"]["settings"] != blobs[0]["meta"]["settings"]:
            raise ValueError(f"{p} was run with other settings than {paths[0]}")
        clash = set(results) & set(b["results"])
        if clash:
            raise ValueError(f"{p} repeats training seeds {sorted(clash)}")
        results.update(b["results"])
    meta = dict(blobs[0]["meta"], seeds=sorted(int(k) for k in results))
    table = report.render_results(results, blobs[0]["reference"], meta=meta)
    print(table.split("<!--")[0])
    if write_to:
        Path(write_to).parent.mkdir(parents=True, exist_ok=True)
        Path(write_to).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
