"""Every notebook's code cells run top to bottom (their own asserts check the numbers they print)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run(path: Path):
    cells = json.loads(path.read_text())["cells"]
    code = [("".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    scope: dict[str, object] = {"__name__": "__notebook__"}
    for i, src in enumerate(code):
        try:
            exec(compile(src, f"{path.name}[cell {i}]", "exec"), scope)
        except Exception as e:  # name the cell: a traceback alone points into exec'd text
            raise AssertionError(f"{path.name}: code cell {i} failed: {e!r}") from e
