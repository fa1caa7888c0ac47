"""Packet framing: split packets, escapes, run-length encoding, bad
checksums, stray acknowledgements and noise — never an exception."""

from __future__ import annotations

import random

from tvmm.gdbstub.codec import (Ack, BadPacket, Decoder, Interrupt, Nack, Packet, checksum, decode_body,
                                encode, escape)


def test_a_packet_split_at_every_byte_decodes_once():
    frame = encode(b"m100,4")
    d = Decoder()
    events = [e for b in frame for e in d.feed(bytes([b]))]
    assert events == [Packet(b"m100,4")]


def test_escapes_round_trip_for_every_byte_value():
    data = bytes(range(256))
    frame = encode(data)
    body = frame[1:-3]
    assert b"#" not in body and b"$" not in body and b"*" not in body.replace(b"}\x0a", b"")
    assert Decoder().feed(frame) == [Packet(data)]
    assert decode_body(escape(data)) == data


def test_run_length_encoding_is_decoded():
    body = b"0* "                               # '0' then 32-29 = 3 more
    frame = b"$" + body + b"#" + f"{checksum(body):02x}".encode()
    assert Decoder().feed(frame) == [Packet(b"0000")]


def test_bad_checksum_is_reported_and_the_next_packet_still_decodes():
    d = Decoder()
    good = encode("g")
    events = d.feed(b"$g#00" + good)
    assert isinstance(events[0], BadPacket) and "checksum" in events[0].reason
    assert events[1] == Packet(b"g")


def test_acks_interrupts_and_noise_between_packets():
    d = Decoder()
    assert d.feed(b"+-\x03junk\r\n" + encode("?") + b"+") == [Ack(), Nack(), Interrupt(), Packet(b"?"), Ack()]


def test_malformed_bodies_are_bad_packets_not_exceptions():
    for body in (b"abc}", b"*x", b"ab*\x01"):
        frame = b"$" + body + b"#" + f"{checksum(body):02x}".encode()
        (event,) = Decoder().feed(frame)
        assert isinstance(event, BadPacket)
    assert isinstance(Decoder().feed(b"$x#zz")[0], BadPacket)


def test_random_bytes_never_raise():
    rng = random.Random(7)
    d = Decoder()
    for _ in range(200):
        d.feed(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
