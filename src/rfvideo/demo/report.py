"""Tables and claims from per-training-seed results, and the check of one run against the stored claims.

`results[seed][row][metric]` is one number per training seed (the mean over held-out prompts and evaluation
seeds). A claim compares two rows on one metric through the per-seed differences `d_i`; the rule:

    a difference is a finding only when |mean(d)| >= 2 std(d) over training seeds (n >= 2);
    otherwise it is reported as "not distinguishable".

The results file is Markdown for the README plus the per-seed values and claims as JSON inside an HTML
comment, which `check_claims` reads back at the end of `make demo`.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

__all__ = ["CLAIMS", "ROWS", "check_claims", "claims_from", "read_results", "render_results"]

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
_JSON_TAG = "demo-results-json"


def _std(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def claims_from(results: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Each claim's per-seed differences, mean, std, sign count and verdict."""
    seeds = sorted(results, key=int)
    out = []
    for cid, a, b, metric in CLAIMS:
        if any(a not in results[s] or b not in results[s] for s in seeds):
            continue
        d = [results[s][a][metric] - results[s][b][metric] for s in seeds]
        mean, std = statistics.mean(d), _std(d)
        same = sum(1 for x in d if (x > 0) == (mean > 0) and x != 0)
        finding = len(d) >= 2 and abs(mean) >= 2 * std and mean != 0
        verb = "raises" if mean > 0 else "lowers"
        if finding:
            text = (
                f"{ROWS[a]} {verb} {METRIC_NAMES[metric]} against {ROWS[b]} in {same} of {len(d)} seeds, "
                f"by {mean:+.3f} ± {std:.3f}"
            )
        else:
            text = (
                f"{ROWS[a]} vs {ROWS[b]}, {METRIC_NAMES[metric]}: not distinguishable "
                f"({mean:+.3f} ± {std:.3f}, {same} of {len(d)} seeds {'above' if mean > 0 else 'below'} 0)"
            )
        out.append({"id": cid, "a": a, "b": b, "metric": metric, "diffs": d, "mean": mean, "std": std,
                    "same_sign": same, "n": len(d), "finding": finding, "text": text})  # fmt: skip
    return out


def _cell(xs: list[float]) -> str:
    per = " / ".join(f"{x:.3f}" for x in xs)
    return f"{statistics.mean(xs):.3f} ± {_std(xs):.3f} ({per})" if len(xs) > 1 else f"{xs[0]:.3f}"


def render_results(
    results: dict[str, dict[str, dict[str, float]]],
    reference: dict[str, dict[str, float]],
    *,
    meta: dict[str, Any],
) -> str:
    """Markdown: one table (mean ± std over training seeds, then every per-seed value), the reference rows,
    the claims, and the JSON block."""
    seeds = sorted(results, key=int)
    metrics = list(METRIC_NAMES)
    lines = [
        f"Held-out prompts (unseen colour x direction pairs), training seeds {', '.join(seeds)}; each cell: "
        "mean ± std over training seeds (then the per-seed values), each value the mean over the held-out "
        f"prompts and {meta.get('eval_seeds', '?')} evaluation seeds.",
        "",
        "| model | " + " | ".join(METRIC_NAMES[m] for m in metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
    ]
    for key, name in ROWS.items():
        if all(key in results[s] for s in seeds):
            cells = [_cell([results[s][key][m] for s in seeds]) for m in metrics]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, r in reference.items():
        lines.append(f"| reference: {name} | " + " | ".join(f"{r[m]:.3f}" for m in metrics) + " |")
    claims = claims_from(results)
    lines += ["", "Claims (a difference is a finding only when it exceeds twice its seed-to-seed std):", ""]
    lines += [f"- {c['text']}" for c in claims]
    blob = json.dumps(
        {"meta": meta, "results": results, "reference": reference, "claims": claims}, indent=None
    )
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
    """This run's rows against each stored claim: `(claim id, agrees, line)`.

    A finding agrees when this run's difference has the claim's sign and lies within mean ± 2 std; a
    "not distinguishable" claim agrees when this run's difference lies within |mean| + 2 std of zero.
    """
    out = []
    for c in stored["claims"]:
        if c["a"] not in run or c["b"] not in run:
            continue
        d = run[c["a"]][c["metric"]] - run[c["b"]][c["metric"]]
        lo, hi = c["mean"] - 2 * c["std"], c["mean"] + 2 * c["std"]
        if c["finding"]:
            direction = (d > 0) == (c["mean"] > 0)
            ok = direction and lo <= d <= hi
            why = (
                "direction and size" if ok else ("direction only, size outside" if direction else "direction")
            )
            verdict = "AGREES" if ok else "DIFFERS"
            line = f"{verdict} ({why}): this run {d:+.3f}, claim {c['mean']:+.3f} ± {c['std']:.3f}"
        else:
            ok = abs(d) <= abs(c["mean"]) + 2 * c["std"]
            line = (
                f"{'AGREES' if ok else 'DIFFERS'} (claim: not distinguishable): this run {d:+.3f}, "
                f"claim {c['mean']:+.3f} ± {c['std']:.3f}"
            )
        out.append((c["id"], ok, f"{c['text']}\n    -> {line}"))
    return out
