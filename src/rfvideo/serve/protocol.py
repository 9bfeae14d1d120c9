"""The WebSocket protocol of `rfvideo serve`: client messages parsed and checked, server messages built.

Client -> server: JSON text messages, one object each, with a `type`:

    {"type": "start", "prompt": "...", "seed": 0}    seed optional (0 <= seed < 2**31)
    {"type": "prompt", "prompt": "..."}             switch prompt; applies at the next chunk boundary
    {"type": "ack", "chunk": k}                     the client has begun showing chunk k (flow control)
    {"type": "stop"}

Server -> client: JSON text status messages (`hello`, `started`, `chunk`, `switch`, `stopped`, `done`,
`busy`, `error`) and binary messages, each one JPEG-encoded pixel frame. A `chunk` status message
announces the `frames` binary messages that follow it, all of that chunk.

Nothing a client sends becomes a path, a shell string or an attribute name: every field is checked
against a fixed schema here and reaches the generator only as a `str` prompt or an `int` seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ClientMessage", "ProtocolError", "parse_client_message"]

# Fields each message type accepts, and which of them are required.
_SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "start": (frozenset({"type", "prompt", "seed"}), frozenset({"type", "prompt"})),
    "prompt": (frozenset({"type", "prompt"}), frozenset({"type", "prompt"})),
    "ack": (frozenset({"type", "chunk"}), frozenset({"type", "chunk"})),
    "stop": (frozenset({"type"}), frozenset({"type"})),
}
_MAX_SEED = 2**31


class ProtocolError(ValueError):
    """A client message that does not follow the protocol; its text is sent back to the client."""


@dataclass(frozen=True)
class ClientMessage:
    """One checked client message.

    Attributes:
        type: "start", "prompt", "ack" or "stop".
        prompt: the stripped prompt ("start", "prompt"), else None.
        seed: the start seed, None when the client gave none.
        chunk: the acknowledged chunk index ("ack"), else None.
    """

    type: str
    prompt: str | None = None
    seed: int | None = None
    chunk: int | None = None


def _check_prompt(value: Any, max_prompt_chars: int) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"prompt must be a string, got {type(value).__name__}")
    prompt = value.strip()
    if not prompt:
        raise ProtocolError("prompt is empty")
    if len(prompt) > max_prompt_chars:
        raise ProtocolError(f"prompt is {len(prompt)} characters; the limit is {max_prompt_chars}")
    return prompt


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass: `true` must not pass as 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise ProtocolError(f"{name} must be an integer in [{low}, {high}), got {value!r}")
    return value


def parse_client_message(text: str, *, max_prompt_chars: int, max_message_chars: int) -> ClientMessage:
    """Parse and check one client text message.

    Args:
        text: the raw WebSocket text message.
        max_prompt_chars: longest accepted prompt (after stripping).
        max_message_chars: longest accepted raw message; checked before JSON parsing.

    Returns:
        The checked message.

    Raises:
        ProtocolError: malformed JSON, not an object, unknown type, unknown or missing field, bad value.
            The message names the offending value and is fit to show to the user.
    """
    if len(text) > max_message_chars:
        raise ProtocolError(f"message is {len(text)} characters; the limit is {max_message_chars}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"malformed JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _SCHEMA:
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {sorted(_SCHEMA)}")
    allowed, required = _SCHEMA[kind]
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ProtocolError(f"unknown field {unknown[0]!r} in a {kind!r} message")
    missing = sorted(required - set(obj))
    if missing:
        raise ProtocolError(f"missing field {missing[0]!r} in a {kind!r} message")
    if kind in ("start", "prompt"):
        prompt = _check_prompt(obj["prompt"], max_prompt_chars)
        seed = _check_int("seed", obj["seed"], 0, _MAX_SEED) if "seed" in obj else None
        return ClientMessage(kind, prompt=prompt, seed=seed)
    if kind == "ack":
        return ClientMessage(kind, chunk=_check_int("chunk", obj["chunk"], 0, 2**53))
    return ClientMessage(kind)
