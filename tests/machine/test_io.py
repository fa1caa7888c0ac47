"""Port I/O: IN, OUT, INS, OUTS and the I/O permission check.

Unicorn has no port devices, so everything here is directed: a fake port
space records every access, and the SDM (vol. 1, 19.5 for the permission
bitmap; vol. 2 for IN/OUT/INS/OUTS) is the reference.
"""

from __future__ import annotations

import struct

import pytest

from tvmm.machine import Stop, StopKind, segments
from tvmm.machine.consts import DF

from .test_string import CODE, ECX, EDI, ESI, EAX, Box, mov_r32

GP = 13
TSS = 0x40000
IOMAP = 0x68


class FakeIO:
    """Port space that logs every access; reads return 0x10, 0x11, ... (per size)."""

    def __init__(self, stop_after_outs: int | None = None, cpu=None):
        self.log = []
        self.next = 0x10
        self.stop_after_outs = stop_after_outs
        self.cpu = cpu

    def port_in(self, port: int, size: int) -> int:
        v = int.from_bytes(bytes((self.next + i) & 0xFF for i in range(size)), "little")
        self.next += 1
        self.log.append(("in", port, size, v))
        return v

    def port_out(self, port: int, size: int, value: int) -> None:
        self.log.append(("out", port, size, value))
        outs = sum(1 for e in self.log if e[0] == "out")
        if self.stop_after_outs is not None and outs == self.stop_after_outs:
            self.cpu.request_stop(Stop(StopKind.REQUEST, "device"))


def _box(**kw) -> tuple[Box, FakeIO]:
    m = Box()
    io = FakeIO(**kw)
    io.cpu = m.cpu
    m.cpu.io = io
    return m, io


def test_in_out_forms_and_sizes():
    m, io = _box()
    code = b"\xee"                 # out dx, al
    code += b"\x66\xef"            # out dx, ax
    code += b"\xef"                # out dx, eax
    code += b"\xe6\x80"            # out 0x80, al
    code += b"\xe7\x70"            # out 0x70, eax
    code += b"\xec"                # in al, dx
    code += b"\x89\xc3"            # mov ebx, eax
    code += b"\x66\xe5\x60"        # in ax, 0x60
    code += b"\x89\xc1"            # mov ecx, eax
    code += b"\xe5\x61"            # in eax, 0x61
    end = m.load32(code, eax=0xAABBCCDD, edx=0x123403F8)
    cpu = m.finish(end)
    assert io.log == [
        ("out", 0x3F8, 1, 0xDD), ("out", 0x3F8, 2, 0xCCDD), ("out", 0x3F8, 4, 0xAABBCCDD),
        ("out", 0x80, 1, 0xDD), ("out", 0x70, 4, 0xAABBCCDD),
        ("in", 0x3F8, 1, 0x10), ("in", 0x60, 2, 0x1211), ("in", 0x61, 4, 0x15141312),
    ]
    assert cpu.regs[3] == 0xAABBCC10            # IN AL keeps the rest of EAX
    assert cpu.regs[ECX] == 0xAABB1211          # IN AX keeps the upper half
    assert cpu.regs[EAX] == 0x15141312


def test_in_out_in_real_mode_ignore_privilege():
    m, io = _box()
    end = m.load16(b"\xe6\x42\xe4\x43", eax=0x99, eflags=0x2)   # out 0x42, al ; in al, 0x43
    m.finish(end)
    assert io.log == [("out", 0x42, 1, 0x99), ("in", 0x43, 1, 0x10)]


# ---------------------------------------------------------- I/O permission
def _user_mode(m: Box, iomap_bytes: bytes | None, iopl: int = 0, tss_attr: int = 0x8B) -> None:
    """CPL 3 flat segments, IOPL as given, TR -> a TSS at TSS whose bitmap
    (at IOMAP) is ``iomap_bytes`` (None: no bitmap, limit 0x67)."""
    cpu = m.cpu
    for seg in range(6):
        attr = 0xC0FB if seg == 1 else 0xC0F3
        segments.set_cache(cpu, seg, 0x1B if seg == 1 else 0x23, 0, 0xFFFFFFFF, attr)
    cpu.set_cpl(3)
    cpu.set_eflags(0x2 | (iopl << 12))
    m.write(TSS + 0x66, struct.pack("<H", IOMAP))
    limit = 0x67
    if iomap_bytes is not None:
        m.write(TSS + IOMAP, iomap_bytes)
        limit = IOMAP + len(iomap_bytes) - 1
    cpu.tr_sel, cpu.tr_base, cpu.tr_limit, cpu.tr_attr = 0x28, TSS, limit, tss_attr


def _bitmap(allowed: set[int], nports: int = 0x400) -> bytes:
    """Bitmap for ports [0, nports) with only ``allowed`` clear, plus the 0xFF terminator."""
    bits = bytearray(b"\xff" * (nports // 8))
    for p in allowed:
        bits[p >> 3] &= ~(1 << (p & 7))
    return bytes(bits) + b"\xff"


def test_cpl3_bitmap_allows_one_port_and_denies_the_next():
    m, io = _box()
    code = b"\xee"                                 # out dx, al   (port 0x3F8: allowed)
    code += mov_r32(2, 0x3F9) + b"\xee"            # out dx, al   (port 0x3F9: denied)
    m.load32(code, eax=0x41, edx=0x3F8)
    _user_mode(m, _bitmap({0x3F8}))
    m.cpu.run(100)
    assert io.log == [("out", 0x3F8, 1, 0x41)]
    assert m.events == [(GP, 0, CODE + 6)]


@pytest.mark.parametrize("code,port,ok", [
    (b"\x66\xef", 0x3F8, True),       # out dx, ax: ports 0x3F8-0x3F9 both allowed
    (b"\xef", 0x3F8, False),          # out dx, eax: 0x3FA is denied
    (b"\x66\xef", 0x3FF, False),      # 0x400 lies beyond the bitmap -> denied
    (b"\xec", 0x3FF, True),           # 0x3FF is allowed; its two bitmap bytes are inside the limit
    (b"\xec", 0x500, False),          # far beyond the limit
    (b"\xe4\x21", None, True),        # in al, 0x21 (immediate port) allowed
    (b"\xe4\x22", None, False),
])
def test_bitmap_covers_every_byte_of_the_access(code, port, ok):
    m, io = _box()
    end = m.load32(code, edx=port or 0)
    _user_mode(m, _bitmap({0x3F8, 0x3F9, 0x3FF, 0x21}))
    m.cpu.run(100)
    if ok:
        assert m.events == [(6, None, end)] and len(io.log) == 1
    else:
        assert m.events == [(GP, 0, CODE)] and io.log == []


def test_iopl3_needs_no_bitmap_and_cpl0_ignores_it():
    m, io = _box()
    end = m.load32(b"\xee", eax=1, edx=0x3F9)
    _user_mode(m, None, iopl=3)
    m.finish(end)
    assert io.log == [("out", 0x3F9, 1, 1)]
    m2, io2 = _box()
    end = m2.load32(b"\xee", eax=2, edx=0x3F9)     # CPL 0, IOPL 0, TSS without a bitmap
    m2.cpu.tr_limit = 0x67
    m2.finish(end)
    assert io2.log == [("out", 0x3F9, 1, 2)]


def test_no_bitmap_or_16bit_tss_denies_cpl3():
    for iomap, attr in ((None, 0x8B), (_bitmap({0x3F8}), 0x83)):
        m, io = _box()
        m.load32(b"\xec", edx=0x3F8)
        _user_mode(m, iomap, tss_attr=attr)
        m.cpu.run(100)
        assert m.events == [(GP, 0, CODE)] and io.log == []


def test_rep_outs_denied_port_faults_before_any_access_but_ecx_zero_does_nothing():
    m, io = _box()
    code = b"\xf3\x6e"                                   # rep outsb, ECX = 0: no check, no access
    code += mov_r32(ECX, 3) + b"\xf3\x6e"                # rep outsb with ECX = 3: #GP(0)
    m.load32(code, esi=0x20000, edx=0x3F9)
    _user_mode(m, _bitmap({0x3F8}))
    m.cpu.run(100)
    assert io.log == []
    assert m.events == [(GP, 0, CODE + 7)]
    assert m.cpu.regs[ECX] == 3 and m.cpu.regs[ESI] == 0x20000


# --------------------------------------------------------------- INS / OUTS
def test_rep_outsb_sends_bytes_in_order_and_backwards_with_df():
    m, io = _box()
    m.write(0x20000, b"hello")
    end = m.load32(b"\xf3\x6e", esi=0x20000, ecx=5, edx=0xE9)
    cpu = m.finish(end)
    assert [e[3] for e in io.log] == list(b"hello") and {e[1] for e in io.log} == {0xE9}
    assert cpu.regs[ESI] == 0x20005 and cpu.regs[ECX] == 0 and cpu.icount == 5
    m2, io2 = _box()
    m2.write(0x20000, b"hello")
    end = m2.load32(b"\xf3\x6e", esi=0x20004, ecx=5, edx=0xE9, eflags=2 | DF)
    cpu = m2.finish(end)
    assert bytes(e[3] for e in io2.log) == b"olleh"
    assert cpu.regs[ESI] == 0x1FFFF


def test_outsw_with_segment_override_and_16bit_addressing():
    m, io = _box()
    m.write(0x30010, struct.pack("<2H", 0x1234, 0x5678))
    # real mode: fs: rep outsw with SI/CX, FS = 0x3000
    end = m.load16(b"\x64\xf3\x6f", esi=0xFFFF0010, ecx=0x00010002, edx=0x1F0)
    segments.load_real(m.cpu, 4, 0x3000)
    cpu = m.finish(end)
    assert io.log == [("out", 0x1F0, 2, 0x1234), ("out", 0x1F0, 2, 0x5678)]
    assert cpu.regs[ESI] == 0xFFFF0014 and cpu.regs[ECX] == 0x00010000


def test_rep_insw_and_insd_store_port_data():
    m, io = _box()
    code = b"\x66\xf3\x6d"                       # rep insw
    code += mov_r32(ECX, 2) + b"\xf3\x6d"        # rep insd
    code += b"\x6c"                              # insb
    end = m.load32(code, edi=0x20000, ecx=3, edx=0x1F0)
    cpu = m.finish(end)
    assert [e[:3] for e in io.log] == [("in", 0x1F0, 2)] * 3 + [("in", 0x1F0, 4)] * 2 + [("in", 0x1F0, 1)]
    want = b"".join(e[3].to_bytes(e[2], "little") for e in io.log)
    assert m.read(0x20000, len(want) + 1) == want + b"\0"
    assert cpu.regs[EDI] == 0x20000 + len(want)


def test_ins_to_read_only_segment_faults_without_reading_the_port():
    m, io = _box()
    m.load32(b"\x6c", edi=0x20000, edx=0x60)
    segments.set_cache(m.cpu, 0, 0x10, 0, 0xFFFFFFFF, 0xC091)     # ES read-only
    m.cpu.run(100)
    assert io.log == [] and m.events == [(GP, 0, CODE)] and m.cpu.regs[EDI] == 0x20000


def test_device_stop_request_interrupts_rep_outs_between_iterations():
    m, io = _box(stop_after_outs=3)
    m.write(0x20000, bytes(range(1, 11)))
    end = m.load32(b"\xf3\x6e", esi=0x20000, ecx=10, edx=0xE9)
    stop = m.cpu.run(10_000)
    assert stop.kind == StopKind.REQUEST
    assert len(io.log) == 3 and m.cpu.regs[ECX] == 7 and m.cpu.regs[ESI] == 0x20003
    assert m.cpu.eip == CODE and m.cpu.icount == 3
    m.finish(end)
    assert [e[3] for e in io.log] == list(range(1, 11)) and m.cpu.icount == 10


def test_budget_limited_rep_ins_resumes_without_losing_data():
    m, io = _box()
    end = m.load32(b"\xf3\x6c", edi=0x20000, ecx=9, edx=0x60)
    assert m.cpu.run(4).kind == StopKind.BUDGET
    assert len(io.log) == 4 and m.cpu.regs[ECX] == 5 and m.cpu.eip == CODE
    m.finish(end)
    assert m.read(0x20000, 10) == bytes(range(0x10, 0x19)) + b"\0"
