"""Limits and knobs of `rfvideo serve`, in one dataclass (what a public demo needs bounded)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_ALLOWED_HOSTS", "ServeSettings"]

# Host names a browser on this machine uses; the address a connection arrived on is always allowed too.
DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
# A host name, an IPv4 / IPv6 address, "*.domain" (any subdomain) or "*" (no check).
_HOST_PATTERN = re.compile(r"^(\*|(\*\.)?[a-z0-9_.-]+|[0-9a-f:.]+)$")


@dataclass(kw_only=True)
class ServeSettings:
    """Server limits.

    Attributes:
        max_streams: generations that may run at once; a client asking for one more gets `busy`.
        max_ahead: chunks the server may produce beyond the last one the client acknowledged
            (flow control: a slow client slows its generation; memory per stream stays bounded).
        max_prompt_chars: longest prompt accepted (after stripping whitespace).
        max_message_chars: longest raw client text message, checked before JSON parsing; the WebSocket
            frame limit of the server is 4 bytes (UTF-8) a character of it.
        max_chunks: chunks per stream before it ends with `done`; None streams until stopped (or the
            generator's own limit).
        jpeg_quality: Pillow JPEG quality of the frames (1..95).
        default_seed: seed of a stream whose `start` message gives none.
        max_queued_messages: outgoing messages (a chunk and its frames count as one) a connection may
            have waiting; a client that lets more pile up is not reading and is disconnected (1008).
        max_buffered_bytes: outgoing bytes a connection may have waiting (same rule); must hold
            `max_ahead` chunks of frames.
        max_messages_per_s: client messages read per second per connection once the burst is used up;
            past it the server stops reading that connection until it is back under the rate.
        max_message_burst: client messages read at once before the rate applies.
        ack_timeout_s: a stream waiting this long for an ack (all its credit used) is stopped and its
            generation slot freed (`stopped` with a `reason`).
        idle_timeout_s: a connection that sends no message for this long is closed (code 1000).
        allowed_hosts: host names (the `Host` header without its port) the server answers; the address
            the connection arrived on always passes. Blocks DNS rebinding: a page of `evil.example`
            whose name resolves to this machine still sends `Host: evil.example`. `"*.example.org"`
            allows the subdomains of example.org, `"*"` turns the check off.
    """

    max_streams: int = 2
    max_ahead: int = 2
    max_prompt_chars: int = 200
    max_message_chars: int = 4096
    max_chunks: int | None = None
    jpeg_quality: int = 85
    default_seed: int = 0
    max_queued_messages: int = 64
    max_buffered_bytes: int = 32 * 2**20
    max_messages_per_s: int = 20
    max_message_burst: int = 40
    ack_timeout_s: float = 60.0
    idle_timeout_s: float = 300.0
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS

    def __post_init__(self) -> None:
        positive = ("max_streams", "max_ahead", "max_prompt_chars", "max_message_chars")
        positive += ("max_queued_messages", "max_buffered_bytes", "max_messages_per_s", "max_message_burst")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_chunks is not None and (not isinstance(self.max_chunks, int) or self.max_chunks < 1):
            raise ValueError(f"max_chunks must be a positive int or None, got {self.max_chunks!r}")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be an int in [1, 95], got {self.jpeg_quality!r}")
        if not isinstance(self.default_seed, int) or not 0 <= self.default_seed < 2**31:
            raise ValueError(f"default_seed must be an int in [0, 2**31), got {self.default_seed!r}")
        if self.max_message_chars < self.max_prompt_chars:
            raise ValueError(
                f"max_message_chars={self.max_message_chars} must be >= max_prompt_chars="
                f"{self.max_prompt_chars}, or a prompt within the limit could not be sent"
            )
        for name in ("ack_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        # Room for the chunks flow control lets through plus the status messages around them.
        if self.max_queued_messages < self.max_ahead + 8:
            raise ValueError(
                f"max_queued_messages={self.max_queued_messages} must be >= max_ahead + 8 = "
                f"{self.max_ahead + 8}: the chunks flow control allows must fit in the queue"
            )
        hosts = (self.allowed_hosts,) if isinstance(self.allowed_hosts, str) else self.allowed_hosts
        hosts = tuple(str(h).strip().lower().removeprefix("[").removesuffix("]") for h in hosts)
        for host in hosts:
            if not _HOST_PATTERN.match(host):
                raise ValueError(
                    f"allowed_hosts: {host!r} is not a host name, an IP address, '*.domain' or '*'"
                )
        self.allowed_hosts = hosts
