"""`rfvideo serve` as a user runs it: a real process on 127.0.0.1 serving a config, a stream over the
socket, and a clean exit (status 0, streams stopped) on SIGTERM / SIGINT; `--demo` without a checkpoint
says how to make one; bad options are one-line errors.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from rfvideo.cli import main  # noqa: E402
from rfvideo.cli.serve import DEMO_CONFIG, find_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, limit_s: float = 300.0) -> None:
    """Poll /healthz until the server answers (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.communicate()[0]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if json.load(r) == {"status": "ok"}:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not come up")


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_serve_process_streams_and_exits_cleanly_on_signal(sig: signal.Signals) -> None:
    from websockets.sync.client import connect

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rfvideo.cli", "serve", "--config", str(REPO / DEMO_CONFIG)]
    cmd += ["--port", str(port), "--max-chunks", "50", "--threads", "1"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        with connect(url.replace("http://", "ws://") + "/ws") as ws:
            assert json.loads(ws.recv())["type"] == "hello"
            ws.send(json.dumps({"type": "start", "prompt": "a red square moving left"}))
            chunks = 0
            while chunks < 2:
                msg = ws.recv()
                if isinstance(msg, str) and json.loads(msg)["type"] == "chunk":
                    ws.send(json.dumps({"type": "ack", "chunk": chunks}))
                    chunks += 1
            with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
                assert json.load(r)["active_streams"] == 1
            proc.send_signal(sig)  # while the stream runs
            out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert f"rfvideo serve: stopped ({sig.name})" in out
    assert "Application shutdown complete" in out and "Traceback" not in out
    assert f"http://127.0.0.1:{port}/" in out  # loopback by default


def test_demo_without_checkpoint_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no outputs/demo/pipeline or outputs/demo/serve here
    (tmp_path / "experiments" / "demo").mkdir(parents=True)
    (tmp_path / "experiments" / "demo" / "reward_forcing.yaml").write_text("model: {}\n")
    assert main(["serve", "--demo", "--no-train"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: --demo: no outputs/demo/pipeline and no checkpoint under outputs/demo/serve; run: "
        "rfvideo fit --config experiments/demo/reward_forcing.yaml "
        "--trainer.default_root_dir=outputs/demo/serve"
    )


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["serve", "--demo", "--port", "70000"])
    assert info.value.code == 2
    assert "port must lie in [1, 65535], got 70000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--demo", "--config", "x.yaml"])  # one source only
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "x.yaml"), "--ckpt", str(tmp_path / "none.ckpt")]) == 2
    assert "none.ckpt" in capsys.readouterr().err


def test_find_checkpoint_prefers_the_newest_last_ckpt(tmp_path: Path) -> None:
    assert find_checkpoint(tmp_path / "absent") is None
    assert find_checkpoint(tmp_path) is None
    a = tmp_path / "version_0" / "checkpoints" / "last.ckpt"
    b = tmp_path / "version_1" / "checkpoints" / "epoch=3-step=20.ckpt"
    c = tmp_path / "version_1" / "checkpoints" / "last.ckpt"
    for i, p in enumerate((a, b)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
    assert find_checkpoint(tmp_path) == a  # last.ckpt beats a newer epoch checkpoint
    c.write_bytes(b"x")
    os.utime(c, (2000, 2000))
    assert find_checkpoint(tmp_path) == c
