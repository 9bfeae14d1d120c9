"""`resolve_pretrained`: local paths are returned, path-looking strings that do not exist say "no such
folder", hub ids are checked against the cache and a hub (a local HTTP server or a closed port here:
never the internet)."""

from __future__ import annotations

import http.server
import threading

import pytest

from rfvideo.models import hub
from rfvideo.models.hub import looks_like_path, resolve_pretrained


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path / "hf_cache"


def test_existing_folder_and_file_are_returned(tmp_path, monkeypatch):
    (tmp_path / "wan").mkdir()
    (tmp_path / "w.pt").write_bytes(b"x")
    assert resolve_pretrained(tmp_path / "wan", what="Wan") == str(tmp_path / "wan")
    assert resolve_pretrained(str(tmp_path / "w.pt"), what="ckpt") == str(tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    assert resolve_pretrained("wan", what="Wan") == "wan"  # a bare relative name that exists is local
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_pretrained("~/wan", what="Wan") == str(tmp_path / "wan")


@pytest.mark.parametrize("rel", ["./nope", "../nope", "~/nope", "a/b/c", "x\\y", "models/typo"])
def test_missing_path_says_no_such_folder(tmp_path, monkeypatch, rel, empty_cache):
    (tmp_path / "models").mkdir()  # "models/typo": its parent exists, so it is a path
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(hub, "_ask_hub", lambda repo_id: pytest.fail(f"asked the hub about {repo_id}"))
    with pytest.raises(ValueError, match=r"Wan2.1 weights: no such folder: ") as e:
        resolve_pretrained(rel, what="Wan2.1 weights")
    assert repr(rel) in str(e.value)


def test_absolute_missing_path(tmp_path, empty_cache):
    with pytest.raises(ValueError, match="no such folder"):
        resolve_pretrained(str(tmp_path / "missing" / "wan"), what="Wan")


def test_looks_like_path_keeps_hub_ids():
    for hub_id in ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "gpt2", "openai/clip-vit-large-patch14"):
        assert not looks_like_path(hub_id)
    for path in ("/abs", "./x", "../x", "~/x", "a/b/c", "."):
        assert looks_like_path(path)


def test_cached_hub_id_needs_no_request(empty_cache, monkeypatch):
    (empty_cache / "models--Wan-AI--Wan2.1-T2V-1.3B-Diffusers").mkdir(parents=True)
    monkeypatch.setattr(hub, "_ask_hub", lambda repo_id: pytest.fail("asked the hub"))
    assert (
        resolve_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", what="Wan")
        == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    )


def test_unreachable_hub_is_named(empty_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(ValueError, match=r"no local folder 'Org/Model' and the hub is unreachable"):
        resolve_pretrained("Org/Model", what="Wan")


def test_offline_without_cache_is_named(empty_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"no local folder 'Org/Model' and the hub is offline"):
        resolve_pretrained("Org/Model", what="Wan")


class _Hub(http.server.BaseHTTPRequestHandler):
    """A stand-in hub API: `known/model` exists, every other repository is not found."""

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/api/models/known/model"):
            body = b'{"id": "known/model", "sha": "0", "siblings": []}'
            self.send_response(200)
        else:
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def local_hub(monkeypatch, empty_cache):
    from huggingface_hub import constants

    server = http.server.HTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield
    server.shutdown()
    server.server_close()


def test_known_hub_id_passes_unknown_is_named(local_hub):
    assert resolve_pretrained("known/model", what="CLIP") == "known/model"
    with pytest.raises(ValueError, match=r"CLIP: no local folder 'nobody/nothing' and no hub repository"):
        resolve_pretrained("nobody/nothing", what="CLIP")


@pytest.mark.parametrize("bad", ["", "   ", "org/na me", 3])
def test_malformed_input(bad, empty_cache):
    with pytest.raises(ValueError, match="Wan"):
        resolve_pretrained(bad, what="Wan")  # type: ignore[arg-type]


def _loaders():
    """Every loader that takes a weights folder or hub id, called with a missing local folder."""
    from rfvideo.models import TextEncoder, WanVAE
    from rfvideo.modules.components import load_causal_wan
    from rfvideo.rewards.aesthetic import AestheticReward
    from rfvideo.rewards.clip_score import ClipScoreReward, load_clip_processing
    from rfvideo.rewards.hps import HPSv2Reward
    from rfvideo.rewards.image_reward import load_blip_tokenizer
    from rfvideo.rewards.pickscore import PickScoreReward

    return {
        "WanVAE": lambda p: WanVAE.from_pretrained(p),
        "load_causal_wan": lambda p: load_causal_wan(p),
        "TextEncoder": lambda p: TextEncoder.from_pretrained(p),
        "ClipScoreReward": lambda p: ClipScoreReward.from_pretrained(p),
        "load_clip_processing": lambda p: load_clip_processing(p),
        "PickScoreReward": lambda p: PickScoreReward.from_pretrained(p, processor_path=p),
        "HPSv2Reward": lambda p: HPSv2Reward.from_pretrained(p, processor_path=p),
        "AestheticReward": lambda p: AestheticReward.from_pretrained(p, p),
        "load_blip_tokenizer": lambda p: load_blip_tokenizer(p),
    }


@pytest.mark.parametrize("name", list(_loaders()))
def test_every_loader_says_no_such_folder(tmp_path, name, empty_cache, monkeypatch):
    monkeypatch.setattr(hub, "_ask_hub", lambda repo_id: pytest.fail(f"asked the hub about {repo_id}"))
    missing = str(tmp_path / "weights" / "wan")
    with pytest.raises(ValueError, match=r"no such folder: '.*weights/wan'"):
        _loaders()[name](missing)
