"""The isolated-environment builders (tools/vbench_env, tools/reward_env over tools/isolated_env.sh), checked
without building anything: the dry run creates nothing and prints the commands a real run executes (a fake
base interpreter records them), the matched torch/torchvision pair comes first, each builder's own
packages follow.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILDERS = {
    "vbench": ("tools/vbench_env/setup.sh", "--no-deps vbench==0.1.5"),
    "reward": ("tools/reward_env/setup.sh", "--no-deps hpsv2==1.2.0 image-reward==1.5"),
}

# A stand-in for python3: `-m venv DIR` makes DIR/bin/python a copy of itself; every other call is logged.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
echo "$*" >> "$FAKE_LOG"
if [ "$1" = "-" ]; then cat > /dev/null; fi
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(script: str, venv: Path, **env: str) -> str:
    out = subprocess.run(["bash", str(ROOT / script), str(venv)], env={**os.environ, **env}, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return out.stdout


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_dry_run_creates_nothing_and_lists_what_a_run_does(tmp_path, name):
    script, own = BUILDERS[name]
    dry = _run(script, tmp_path / "dry", RFVIDEO_ENV_DRY_RUN="1")
    assert not (tmp_path / "dry").exists()
    pips = [line for line in dry.splitlines() if " -m pip install --quiet " in line]
    assert pips[0].endswith("install --quiet torch==2.14.1 torchvision==0.29.1")  # first: later ones keep it
    assert f"install --quiet {own}" in pips[1]
    assert dry.splitlines()[0] == f"python3 -m venv {tmp_path / 'dry'}"

    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "log"
    real = _run(script, tmp_path / "env", PYTHON=str(fake), FAKE_LOG=str(log))
    assert (tmp_path / "env" / ".gitignore").read_text() == "*\n"
    ran = [
        line.split("install --quiet ", 1)[1] for line in log.read_text().splitlines() if "pip install" in line
    ]
    # The dry run quotes shell metacharacters (>=, <, ,): unquote to compare with the arguments run.
    listed = [p.split("install --quiet ", 1)[1].replace("\\", "") for p in pips]
    assert ran == listed and len(ran) >= 3
    assert real.strip().endswith(f"ready: {tmp_path / 'env'}")
