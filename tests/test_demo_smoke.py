"""The offline demo end to end at its `--fast` size, across worlds: files written, numbers finite, a cut
multi-world run resumes from the runs on disk, two processes merge into one table, and a one-world run
(what `make demo` is) reproduces its world's numbers, prints its differences beside the committed claims
with the "k of N" summary and no verdict, and `--strict-claims` exits 1 only on a disagreement."""

from __future__ import annotations

import json
import math

import pytest

from rfvideo.demo import main
from rfvideo.demo.report import read_results, render_results


@pytest.mark.slow
def test_demo_fast_across_worlds_resumes_merges_and_checks_a_single_run(tmp_path, capsys):
    claims = tmp_path / "claims.md"
    a = tmp_path / "a"
    argv = ["--fast", "--quiet", "--worlds", "0", "1", "2", "--seeds", "0", "--out", str(a)]
    assert main([*argv, "--write-readme-tables", str(claims)]) == 0
    stored = read_results(claims)
    assert sorted(stored["results"]) == ["0", "1", "2"]
    for w in ("0", "1", "2"):
        rows = stored["results"][w]["0"]
        assert set(rows) == {"stage1", "stage2_last_frame", "ablation_all_frames", "hacking_colour_only"}
        assert all(math.isfinite(v) for r in rows.values() for v in r.values())
        assert (a / f"world{w}" / "seed0" / "grid.png").stat().st_size > 0
        assert (a / f"world{w}" / "seed0" / "rows.json").is_file()
    # the worlds differ: the world seed redraws the base (what another machine redraws)
    assert stored["results"]["0"]["0"] != stored["results"]["1"]["0"]
    assert all(c["n_worlds"] == 3 and c["range"] is not None for c in stored["claims"])
    assert (a / "stage1" / "generator.safetensors").is_file() and (a / "pipeline").is_dir()
    capsys.readouterr()

    # a cut run resumes: every (world, seed) on disk is loaded, not retrained
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("seed 0: loaded from") == 3 and "stage 1: loss" not in out
    assert json.loads((a / "results.json").read_text())["results"] == stored["results"]

    # two processes on disjoint worlds merge into the same table
    blob = json.loads((a / "results.json").read_text())
    parts = []
    for ws in (["0", "1"], ["2"]):
        part = dict(blob, results={w: blob["results"][w] for w in ws})
        parts.append(tmp_path / f"part{ws[0]}.json")
        parts[-1].write_text(json.dumps(part))
    merged = tmp_path / "merged.md"
    assert main(["--merge", *map(str, parts), "--write-readme-tables", str(merged)]) == 0
    assert read_results(merged)["claims"] == stored["claims"]
    with pytest.raises(ValueError, match="repeats world 0"):
        main(["--merge", str(parts[0]), str(parts[0])])
    capsys.readouterr()

    # one world, one seed (`make demo`), from a fresh folder: world 0's numbers, differences, no verdict
    b = tmp_path / "b"
    assert main(["--fast", "--quiet", "--out", str(b), "--claims", str(claims)]) == 0
    out = capsys.readouterr().out
    assert json.loads((b / "results.json").read_text())["results"]["0"]["0"] == stored["results"]["0"]["0"]
    n = len(stored["claims"])
    assert f"{n} of {n} claims within the range another machine sees" in out
    # the run's own lines give its difference and the range, never a verdict (the committed claim's text
    # is printed beside them, on its own line)
    mine = [line for line in out.splitlines() if "range another machine sees [" in line]
    assert len(mine) == n and not any("finding" in x or "distinguishable" in x for x in mine)
    assert "not distinguishable" not in out.split("This run against")[0]
    assert (b / "grid.png").stat().st_size > 0 and "total time" in out

    # a committed claim whose range excludes this run: reported, and --strict-claims exits 1
    doctored = json.loads(json.dumps(stored))
    doctored["claims"][0]["range"] = [5.0, 6.0]
    bad = tmp_path / "bad.md"
    table = render_results(stored["results"], stored["reference"], meta=stored["meta"]).split("<!--")[0]
    bad.write_text(table + "<!-- demo-results-json\n" + json.dumps(doctored) + "\n-->\n")
    assert main(["--fast", "--quiet", "--out", str(b), "--claims", str(bad)]) == 0
    out = capsys.readouterr().out
    assert f"{n - 1} of {n} claims within" in out and "OUTSIDE" in out
    assert main(["--fast", "--quiet", "--out", str(b), "--claims", str(bad), "--strict-claims"]) == 1


def test_demo_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--eval-seeds"):
        main(["--eval-seeds", "0", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--seeds"):
        main(["--seeds", "1", "1", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--worlds"):
        main(["--worlds", "0", "0", "--out", str(tmp_path)])
