"""The GDB remote serial protocol's framing, without any I/O.

``Decoder.feed(data)`` takes bytes as they arrive (in any split) and returns
the events they complete: ``Packet(payload)`` for a well-formed
``$payload#cs`` (escapes and run-length encoding undone), ``BadPacket`` for
one whose checksum is wrong or whose body cannot be decoded, ``Interrupt``
for a 0x03 byte outside a packet, ``Ack``/``Nack`` for ``+``/``-``.  Any
other byte between packets is noise and ignored.

``encode(payload)`` frames a reply: ``$``, the payload with ``# $ } *``
escaped, ``#`` and the two-digit checksum.  Replies are never run-length
encoded (a repeat count must never be ``#`` or ``$``; simpler not to).

Invariants: the decoder never raises on input; a packet larger than
``MAX_PACKET`` is reported as bad and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PACKET = 1 << 20
ESCAPE = 0x7D
_SPECIAL = b"#$}*"


@dataclass(frozen=True)
class Packet:
    payload: bytes


@dataclass(frozen=True)
class BadPacket:
    reason: str


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nack:
    pass


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in _SPECIAL:
            out += bytes((ESCAPE, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def encode(payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode("latin-1")
    body = escape(payload)
    return b"$" + body + b"#" + f"{checksum(body):02x}".encode()


def decode_body(body: bytes) -> bytes:
    """Undo escapes and run-length encoding (``X*n``: repeat X n-29 more times)."""
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        b = body[i]
        if b == ESCAPE:
            if i + 1 >= n:
                raise ValueError("escape at the end of a packet")
            out.append(body[i + 1] ^ 0x20)
            i += 2
        elif b == 0x2A:                                  # '*'
            if not out or i + 1 >= n:
                raise ValueError("run-length marker without a character to repeat")
            count = body[i + 1] - 29
            if count < 0:
                raise ValueError("bad run-length count")
            out += bytes((out[-1],)) * count
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


class Decoder:
    def __init__(self):
        self._buf = bytearray()
        self._in_packet = False
        self._csum: bytearray | None = None

    def feed(self, data: bytes) -> list:
        events = []
        for b in data:
            if not self._in_packet:
                if b == 0x24:                            # '$'
                    self._in_packet, self._buf, self._csum = True, bytearray(), None
                elif b == 0x03:
                    events.append(Interrupt())
                elif b == 0x2B:                          # '+'
                    events.append(Ack())
                elif b == 0x2D:                          # '-'
                    events.append(Nack())
                continue                                 # anything else: noise
            if self._csum is not None:
                self._csum.append(b)
                if len(self._csum) == 2:
                    events.append(self._finish())
                continue
            if b == 0x23:                                # '#'
                self._csum = bytearray()
            elif b == 0x24:                              # a new '$' inside a packet: restart
                self._buf = bytearray()
            else:
                self._buf.append(b)
                if len(self._buf) > MAX_PACKET:
                    self._in_packet = False
                    events.append(BadPacket("packet too long"))
        return events

    def _finish(self):
        self._in_packet = False
        body, cs = bytes(self._buf), bytes(self._csum)
        try:
            want = int(cs, 16)
        except ValueError:
            return BadPacket(f"bad checksum digits {cs!r}")
        if checksum(body) != want:
            return BadPacket(f"checksum mismatch (got {want:02x}, computed {checksum(body):02x})")
        try:
            return Packet(decode_body(body))
        except ValueError as e:
            return BadPacket(str(e))
