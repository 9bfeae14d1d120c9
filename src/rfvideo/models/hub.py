"""Tell a local weights path from a Hugging Face hub id before `from_pretrained` guesses.

`from_pretrained("weights/wan")` with a mistyped folder is otherwise read as a hub id and the user is
told "couldn't connect to huggingface.co". `resolve_pretrained` decides up front:

- an existing local path (folder or file) -> it, unchanged;
- a string that looks like a path (absolute, `./`, `../`, `~`, more than one `/`, a backslash, or a
  parent folder that exists) but does not exist -> `ValueError("... no such folder: ...")`;
- otherwise a hub id `name` or `org/name`: returned when the hub cache holds it; else the hub is asked
  once whether the repository exists (no download), so an unreachable hub or an unknown id is one
  clear error before any weights load.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["looks_like_path", "resolve_pretrained"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_TRUE = ("1", "true", "yes", "on")


def looks_like_path(text: str) -> bool:
    """Whether `text` can only mean a local path (never a hub id `name` / `org/name`)."""
    if os.path.isabs(text) or text.startswith(("./", "../", "~", ".\\", "..\\")) or text in (".", ".."):
        return True
    if "\\" in text or text.count("/") > 1:
        return True
    parent = Path(text).parent
    # "org/name" with a local folder "org" beside it: a path with a typo in its last part.
    return str(parent) not in ("", ".") and parent.exists()


def _offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}").is_dir()


def _ask_hub(repo_id: str) -> str | None:
    """None when the hub knows `repo_id` (or it is gated / private: from_pretrained explains those);
    else the reason: "not found" or "unreachable (...)"."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=10)
    except RepositoryNotFoundError:
        return "not found"
    except HfHubHTTPError:
        return None  # gated, private or rate limited: the repository exists as far as we can tell
    except Exception as e:  # connection refused, DNS, timeout, offline mode: no answer from the hub
        return f"unreachable ({type(e).__name__})"
    return None


def resolve_pretrained(path_or_id: str | os.PathLike[str], *, what: str, check_hub: bool = True) -> str:
    """A local path or a hub id for `from_pretrained`, checked (see the module docstring).

    Args:
        path_or_id: Local folder / file, or a hub id.
        what: What is being loaded, for messages (e.g. "Wan2.1 weights", "CLIP model").
        check_hub: Ask the hub whether an id that is not cached exists (one small request).

    Returns:
        The local path (`~` expanded) or the hub id.

    Raises:
        ValueError: A path that does not exist ("no such folder"), a malformed id, an id the hub does
            not know, or no local folder and an unreachable / offline hub.
    """
    if not isinstance(path_or_id, (str, os.PathLike)):
        raise ValueError(f"{what}: expected a folder or a hub id, got {path_or_id!r}")
    text = os.fspath(path_or_id)
    if not text.strip():
        raise ValueError(f"{what}: empty path or hub id")
    local = Path(text).expanduser()
    if local.exists():
        return str(local)
    if looks_like_path(text):
        raise ValueError(f"{what}: no such folder: {text!r}")
    if not _HUB_ID.match(text):
        raise ValueError(f"{what}: {text!r} is neither an existing folder nor a hub id (org/name)")
    if _in_hub_cache(text):
        return text
    if _offline():
        raise ValueError(
            f"{what}: no local folder {text!r} and the hub is offline (HF_HUB_OFFLINE) with no cached copy"
        )
    if check_hub:
        reason = _ask_hub(text)
        if reason == "not found":
            raise ValueError(f"{what}: no local folder {text!r} and no hub repository of that name")
        if reason is not None:
            raise ValueError(f"{what}: no local folder {text!r} and the hub is {reason}")
    return text
