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
Error texts never repeat what the client sent (no echo: a reply cannot be made bigger than its fixed
text, and a page cannot reflect content through the server); nesting deeper than `MAX_DEPTH` is refused
before parsing (a recursive parse of `[[[[...` would raise RecursionError).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_DEPTH", "ClientMessage", "ProtocolError", "parse_client_message"]

# Fields each message type accepts, and which of them are required.
_SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "start": (frozenset({"type", "prompt", "seed"}), frozenset({"type", "prompt"})),
    "prompt": (frozenset({"type", "prompt"}), frozenset({"type", "prompt"})),
    "ack": (frozenset({"type", "chunk"}), frozenset({"type", "chunk"})),
    "stop": (frozenset({"type"}), frozenset({"type"})),
}
_MAX_SEED = 2**31
MAX_DEPTH = 4  # every valid message is one flat object (depth 1)


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
        raise ProtocolError(f"prompt must be a string, got a JSON {_json_type(value)}")
    prompt = value.strip()
    if not prompt:
        raise ProtocolError("prompt is empty")
    if len(prompt) > max_prompt_chars:
        raise ProtocolError(f"prompt is {len(prompt)} characters; the limit is {max_prompt_chars}")
    return prompt


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass: `true` must not pass as 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{name} must be an integer in [{low}, {high}), got a JSON {_json_type(value)}")
    if not low <= value < high:
        raise ProtocolError(f"{name} must be an integer in [{low}, {high}), got one out of range")
    return value


def _json_type(value: Any) -> str:
    """The JSON type name of a parsed value (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "value")


def _too_deep(text: str, limit: int) -> bool:
    """Whether `text` nests arrays / objects deeper than `limit` (brackets inside strings ignored)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def parse_client_message(text: str, *, max_prompt_chars: int, max_message_chars: int) -> ClientMessage:
    """Parse and check one client text message.

    Args:
        text: the raw WebSocket text message.
        max_prompt_chars: longest accepted prompt (after stripping).
        max_message_chars: longest accepted raw message; checked before JSON parsing.

    Returns:
        The checked message.

    Raises:
        ProtocolError: too long, nested too deep, malformed JSON, not an object, unknown type, unknown
            or missing field, bad value. The message says which rule was broken, in fixed words and
            server-side numbers only, and is fit to show to the user.
    """
    if len(text) > max_message_chars:
        raise ProtocolError(f"message is {len(text)} characters; the limit is {max_message_chars}")
    if _too_deep(text, MAX_DEPTH):
        raise ProtocolError(f"JSON nested deeper than {MAX_DEPTH} levels; a message is one flat object")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"malformed JSON: {e.msg} at position {e.pos}") from None
    except (ValueError, RecursionError):  # e.g. an integer of more digits than Python converts
        raise ProtocolError("malformed JSON: a value could not be read") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"a message must be a JSON object, got a JSON {_json_type(obj)}")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _SCHEMA:
        raise ProtocolError(f"unknown message type; expected one of {sorted(_SCHEMA)}")
    allowed, required = _SCHEMA[kind]
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ProtocolError(f"unknown field in a {kind!r} message; its fields are {sorted(allowed)}")
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
