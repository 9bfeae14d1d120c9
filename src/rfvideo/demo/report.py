"""Tables and claims from per-world, per-training-seed results, and the check of one run against them.

`results[world][seed][row][metric]` is one number per (world seed, training seed) run (the mean over
held-out prompts and evaluation seeds). The world seed draws the base model and its trajectories (what
another machine, summing floats in another order, also redraws); the training seed draws stage 1 and
stage 2 on top of one base. A claim compares two rows on one metric through the per-run differences
`d[w][s]`; with `m_w` the mean of `d[w][.]` over training seeds:

    across-world std   std of `m_w` over worlds (the spread another machine sees);
    within-world std   mean over worlds of the std of `d[w][.]` over training seeds;
    run range          mean ± 2 std of every single-run difference `d[w][s]` (where one `make demo` lands);
    finding            >= 3 worlds, |mean(m)| >= 2 x the across-world std, and every `m_w` of its sign.

A run of one world makes no verdict: it reports its differences only.

The results file is Markdown plus the per-run values and claims as JSON inside an HTML comment, which
`check_claims` reads back at the end of `make demo`.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

__all__ = ["CLAIMS", "MIN_WORLDS", "ROWS", "check_claims", "claims_from", "read_results", "render_results"]

ROWS = {
    "stage1": "stage 1 (ODE init)",
    "stage2_last_frame": "stage 2 (world reward, last frame)",
    "ablation_all_frames": "ablation: world reward on all frames",
    "hacking_colour_only": "control: colour-only reward (last frame)",
}
METRIC_NAMES = {
    "reward_last": "world reward (last frame)",
    "reward_all": "world reward (all frames)",
    "colour_last": "colour match (last frame)",
    "shape": "shape (IoU with best square)",
    "motion": "motion (px/frame)",
    "direction": "moves the prompt's way",
    "area": "area (last frame)",
}
#: (claim id, row a, row b, metric): the claim is about `a - b`.
CLAIMS = [
    ("stage2_reward", "stage2_last_frame", "stage1", "reward_last"),
    ("stage2_colour", "stage2_last_frame", "stage1", "colour_last"),
    ("stage2_shape", "stage2_last_frame", "stage1", "shape"),
    ("stage2_motion", "stage2_last_frame", "stage1", "motion"),
    ("ablation_motion", "ablation_all_frames", "stage2_last_frame", "motion"),
    ("ablation_reward_all", "ablation_all_frames", "stage2_last_frame", "reward_all"),
    ("hacking_area", "hacking_colour_only", "stage2_last_frame", "area"),
]
#: Fewest worlds for a verdict: the std of two world means is one number, not a spread.
MIN_WORLDS = 3
_JSON_TAG = "demo-results-json"

Results = dict[str, dict[str, dict[str, dict[str, float]]]]


def _std(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _keys(d: dict[str, Any]) -> list[str]:
    return sorted(d, key=int)


def claims_from(results: Results) -> list[dict[str, Any]]:
    """Each claim's per-run differences, across-world and within-world spread, run range and verdict."""
    worlds = _keys(results)
    out = []
    for cid, a, b, metric in CLAIMS:
        runs = {w: {s: r for s, r in results[w].items()} for w in worlds}
        if any(a not in r or b not in r for w in worlds for r in runs[w].values()):
            continue
        d = {w: {s: runs[w][s][a][metric] - runs[w][s][b][metric] for s in _keys(runs[w])} for w in worlds}
        world_means = [statistics.mean(d[w].values()) for w in worlds]
        flat = [x for w in worlds for x in d[w].values()]
        mean = statistics.mean(world_means)
        across = _std(world_means)
        withins = [sd for w in worlds if (sd := _std(list(d[w].values()))) is not None]
        within = statistics.mean(withins) if withins else None
        run_std = _std(flat)
        same = sum(1 for m in world_means if m != 0 and (m > 0) == (mean > 0))
        finding = (
            len(worlds) >= MIN_WORLDS
            and across is not None
            and mean != 0
            and abs(mean) >= 2 * across
            and same == len(worlds)
        )
        pair = f"{ROWS[a]} vs {ROWS[b]}, {METRIC_NAMES[metric]}"
        spread = f"{mean:+.3f} ± {_fmt(across)} across worlds (within a world ± {_fmt(within)})"
        if len(worlds) < MIN_WORLDS:
            verdict = f"no verdict ({len(worlds)} world(s); a verdict needs {MIN_WORLDS})"
            text = f"{pair}: {mean:+.3f}; {verdict}"
        elif finding:
            verb = "raises" if mean > 0 else "lowers"
            text = (
                f"{ROWS[a]} {verb} {METRIC_NAMES[metric]} against {ROWS[b]} in {same} of {len(worlds)} "
                f"worlds, by {spread}"
            )
        else:
            why = (
                f"only {same} of {len(worlds)} worlds {'above' if mean > 0 else 'below'} 0"
                if same < len(worlds)
                else "under twice the across-world std"
            )
            text = f"{pair}: not a finding ({spread}; {why})"
        rng = None if run_std is None else [mean - 2 * run_std, mean + 2 * run_std]
        out.append({"id": cid, "a": a, "b": b, "metric": metric, "diffs": d, "world_means": world_means,
                    "mean": mean, "across_std": across, "within_std": within, "run_std": run_std,
                    "range": rng, "same_sign_worlds": same, "n_worlds": len(worlds), "n_runs": len(flat),
                    "finding": finding, "text": text})  # fmt: skip
    return out


def _world_means(results: Results, row: str, metric: str) -> list[float]:
    return [statistics.mean(results[w][s][row][metric] for s in results[w]) for w in _keys(results)]


def _cell(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.3f} ± {_std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def render_results(results: Results, reference: dict[str, dict[str, float]], *, meta: dict[str, Any]) -> str:
    """Markdown: the table (mean ± across-world std of the per-world means), every per-world and per-run
    value, the reference rows, the claims (or, for one world, the differences only), and the JSON block."""
    worlds = _keys(results)
    seeds = sorted({int(s) for w in worlds for s in results[w]})
    metrics = list(METRIC_NAMES)
    rows = [k for k in ROWS if all(k in r for w in worlds for r in results[w].values())]
    n_runs = sum(len(results[w]) for w in worlds)
    lines = [
        f"Held-out prompts (unseen colour x direction pairs); worlds (base seeds) {', '.join(worlds)} x "
        f"training seeds {', '.join(map(str, seeds))} ({n_runs} runs). Each value is the mean over the "
        f"held-out prompts and {meta.get('eval_seeds', '?')} evaluation seeds"
        + (
            "; each cell: mean ± std over worlds of the per-world means (the spread another machine sees)."
            if len(worlds) > 1
            else "."
        ),
        "",
        "| model | " + " | ".join(METRIC_NAMES[m] for m in metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
    ]
    for key in rows:
        cells = [_cell(_world_means(results, key, m)) for m in metrics]
        lines.append(f"| {ROWS[key]} | " + " | ".join(cells) + " |")
    for name, r in reference.items():
        lines.append(f"| reference: {name} | " + " | ".join(f"{r[m]:.3f}" for m in metrics) + " |")
    if n_runs > 1:
        lines += ["", "Every run (world / training seed):", "",
                  "| model | world | seed | " + " | ".join(METRIC_NAMES[m] for m in metrics) + " |",
                  "| --- | --- | --- |" + " --- |" * len(metrics)]  # fmt: skip
        for key in rows:
            for w in worlds:
                for s in _keys(results[w]):
                    vals = " | ".join(f"{results[w][s][key][m]:.3f}" for m in metrics)
                    lines.append(f"| {ROWS[key]} | {w} | {s} | {vals} |")
    claims = claims_from(results)
    if len(worlds) >= MIN_WORLDS:
        lines += [
            "",
            "Claims (a finding: at least twice the across-world std, and the same sign in every world; run "
            "range: mean ± 2 std of the single-run differences, where one `make demo` lands):",
            "",
            "| claim | mean | across-world std | within-world std | per-world means | run range | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in claims:
            per = " / ".join(f"{x:+.3f}" for x in c["world_means"])
            rng = "n/a" if c["range"] is None else f"[{c['range'][0]:+.3f}, {c['range'][1]:+.3f}]"
            verdict = "finding" if c["finding"] else "not a finding"
            name = f"{ROWS[c['a']]} - {ROWS[c['b']]}, {METRIC_NAMES[c['metric']]}"
            lines.append(
                f"| {name} | {c['mean']:+.3f} | {_fmt(c['across_std'])} | {_fmt(c['within_std'])} | {per} | "
                f"{rng} | {verdict} |"
            )
        lines += [""] + [f"- {c['text']}" for c in claims]
    else:
        lines += ["", f"Differences of this run ({len(worlds)} world: no verdict on distinguishability; "
                  "the committed claims are in docs/demo_results.md):", ""]  # fmt: skip
        for c in claims:
            per = ", ".join(f"{x:+.3f}" for w in _keys(c["diffs"]) for x in c["diffs"][w].values())
            lines.append(f"- {ROWS[c['a']]} - {ROWS[c['b']]}, {METRIC_NAMES[c['metric']]}: {per}")
    blob = json.dumps({"meta": meta, "results": results, "reference": reference, "claims": claims})
    lines += ["", f"<!-- {_JSON_TAG}", blob, "-->", ""]
    return "\n".join(lines)


def read_results(path: str | Path) -> dict[str, Any]:
    """The JSON block of a results file written by `render_results`."""
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(rf"<!-- {_JSON_TAG}\n(.*?)\n-->", text, flags=re.S)
    if m is None:
        raise ValueError(f"{path} holds no {_JSON_TAG} block (write it with --write-readme-tables)")
    return json.loads(m.group(1))


def check_claims(stored: dict[str, Any], run: dict[str, dict[str, float]]) -> list[tuple[str, bool, str]]:
    """One run's rows against each stored claim: `(claim id, within, line)`.

    `within`: this run's difference lies in the claim's run range (mean ± 2 std of the stored single-run
    differences over worlds and training seeds), and, for a finding, has its sign. The line shows this
    run's difference beside the committed claim; it makes no verdict on distinguishability (one run
    cannot).
    """
    out = []
    for c in stored["claims"]:
        if c["a"] not in run or c["b"] not in run or c.get("range") is None:
            continue
        d = run[c["a"]][c["metric"]] - run[c["b"]][c["metric"]]
        lo, hi = c["range"]
        ok = lo <= d <= hi and (not c["finding"] or (d > 0) == (c["mean"] > 0))
        where = "within" if ok else ("OUTSIDE" if not lo <= d <= hi else "OUTSIDE (sign)")
        name = f"{ROWS[c['a']]} - {ROWS[c['b']]}, {METRIC_NAMES[c['metric']]}"
        line = (
            f"{name}: this run {d:+.3f}; range another machine sees [{lo:+.3f}, {hi:+.3f}]: {where}\n"
            f"    committed claim: {c['text']}"
        )
        out.append((c["id"], ok, line))
    return out
