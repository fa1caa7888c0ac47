"""BT/BTS/BTR/BTC, BSF/BSR, SETcc, CMOVcc, XADD, CMPXCHG, CMPXCHG8B, BSWAP
(tvmm/machine/ops/bits.py): directed tests and differential tests against
unicorn (32-bit flat and 16-bit real mode).  The differential harness lives
in test_shift.py.

Not compared with unicorn, and why (each is covered by a directed test):
- Faults on read-only pages (CMPXCHG / CMPXCHG8B store cycle on a mismatch,
  BTS vs BT): the oracle maps every page writable and has no paging.
- CMOVcc reading its memory operand when the condition is false: the only
  way to make that read fault in the oracle layout is an unmapped address,
  which tvmm (with RAM everywhere) cannot reproduce; tested with a real-mode
  segment-limit #GP instead, which unicorn does not model.
- BT* bit offsets that reach outside the 4 KiB data page or wrap the 16-bit
  address space (unmapped in unicorn).
- The undefined OF/SF/AF/PF after BT*: unicorn's values depend on which
  instruction set the flags before (QEMU's lazy cc_op).  In these snippets
  that is POPF or the initial register write, after which unicorn preserves
  them exactly as tvmm always does, so all flags are compared here.
"""

from __future__ import annotations

import random

import pytest

from tests.diff.snippet import CODE_BASE, DATA_BASE, PAGE, STACK_TOP
from tests.machine.test_shift import (AF, ARITH, CF, EAX, EBP, EBX, ECX, EDX, ESI, MEM, MODES,
                                      OF, PF, SF, ZF, Case, diff, mask, osz, rand_flags, rm_mem,
                                      rm_reg, run_tvmm)
from tests.machine.harness import Machine
from tvmm.machine import Stop, StopKind
from tvmm.machine.flags import CONDITIONS
from tvmm.machine.optable import CC

NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
VREGS = (EAX, ECX, EDX, EBX, EBP)          # registers a case may freely use


def _run(code: bytes, mode: int = 32, flags: int = 0, mem: bytes = b"", page: bytes | None = None, **regs):
    return run_tvmm(mode, Case(code, regs, flags, mem, mask=ARITH, label=code.hex(), page=page),
                    whole_page=page is not None)


def _r(result, i: int) -> int:
    return int(result[1][("eax", "ecx", "edx", "ebx", "ebp").index(NAMES[i])], 16)


def _f(result) -> int:
    return int(result[2], 16)


def _m(result) -> bytes:
    return bytes.fromhex(result[3])


# ==================================================================== directed: BT*
def test_bt_register_offset_masked_and_flags_kept():
    r = _run(b"\x0f\xa3\xc8", eax=0x2, ecx=33, flags=ZF | SF | OF | AF | PF)   # bt eax, ecx (33 -> 1)
    assert _f(r) == CF | ZF | SF | OF | AF | PF
    r = _run(b"\x0f\xa3\xc8", eax=0x2, ecx=32, flags=CF | ZF)                   # bit 0 = 0
    assert _f(r) == ZF


def test_bts_btr_btc_register():
    r = _run(b"\x0f\xab\xc8", eax=0, ecx=31)                     # bts eax, ecx
    assert _r(r, EAX) == 0x8000_0000 and _f(r) == 0
    r = _run(b"\x0f\xb3\xc8", eax=0xFFFF_FFFF, ecx=4)            # btr eax, ecx
    assert _r(r, EAX) == 0xFFFF_FFEF and _f(r) == CF
    r = _run(b"\x66\x0f\xbb\xc8", eax=0x1234_0000, ecx=0x13)     # btc ax, cx (19 mod 16 = 3)
    assert _r(r, EAX) == 0x1234_0008 and _f(r) == 0
    r = _run(b"\x0f\xba\xe8\x25", eax=0)                         # bts eax, 37 -> bit 5
    assert _r(r, EAX) == 0x20


def test_bt_memory_register_offset_is_signed_and_addresses_beyond():
    # bts dword [esi], ecx with ecx = -1: dword at esi-4, bit 31 (the byte just below esi, bit 7)
    r = _run(b"\x0f\xab\x0e", ecx=0xFFFF_FFFF, page=bytes(PAGE))
    page = _m(r)
    off = MEM - DATA_BASE
    assert page[off - 1] == 0x80 and page[off - 4:off - 1] == b"\0\0\0" and page[off] == 0
    # bt [esi], ecx with ecx = 8*100 + 3: byte esi+100, bit 3
    data = bytearray(PAGE)
    data[off + 100] = 0x08
    r = _run(b"\x0f\xa3\x0e", ecx=803, page=bytes(data))
    assert _f(r) & CF
    # 16-bit operand: offset is the signed 16-bit CX; -16 -> word at esi-2, bit 0
    r = _run(b"\x66\x0f\xab\x0e", ecx=0xABCD_FFF0, page=bytes(PAGE))
    assert _m(r)[off - 2:off] == b"\x01\x00"


def test_bt_memory_immediate_offset_masked():
    r = _run(b"\x0f\xba\x2e\x21", mem=b"\0" * 8)                # bts dword [esi], 33 -> bit 1 of [esi]
    assert _m(r) == b"\x02" + b"\0" * 7


def test_bt_memory_offset_wraps_16bit_address_space():
    """16-bit addressing: EA + displacement wraps at 64 KiB (real mode, DS = 0)."""
    m = Machine()
    m.write(CODE_BASE, b"\x0f\xab\x04" + b"\x90" * 8)           # bts [si], ax (16-bit code)
    m.real(0, CODE_BASE, 0, STACK_TOP)
    m.cpu.regs[ESI] = 0x0002
    m.cpu.regs[EAX] = 0xFFE0                                      # -32 bits -> -4 bytes -> 0xFFFE
    assert m.run(1).kind == StopKind.BUDGET
    assert m.read(0xFFFE, 2) == b"\x01\x00"
    assert m.read(0x1FFFE, 2) == b"\x00\x00"


# ============================================================= directed: BSF/BSR
def test_bsf_bsr():
    r = _run(b"\x0f\xbc\xc3", eax=77, ebx=0x0001_0100)            # bsf eax, ebx
    assert _r(r, EAX) == 8 and not _f(r) & ZF
    r = _run(b"\x0f\xbd\xc3", eax=77, ebx=0x0001_0100)            # bsr eax, ebx
    assert _r(r, EAX) == 16
    r = _run(b"\x0f\xbd\xc3", eax=77, ebx=0, flags=CF | OF)      # zero source: ZF, dest kept
    assert _r(r, EAX) == 77 and _f(r) == ZF | PF
    r = _run(b"\x66\x0f\xbc\xc3", eax=0xAAAA_5555, ebx=0xFFFF_0000)   # 16-bit source BX = 0
    assert _r(r, EAX) == 0xAAAA_5555 and _f(r) & ZF
    r = _run(b"\x66\x0f\xbd\xc3", eax=0xAAAA_5555, ebx=0x8000)
    assert _r(r, EAX) == 0xAAAA_000F


# =========================================================== directed: SETcc / CMOVcc
_CC_TRUTH = {   # condition -> predicate over (CF, ZF, SF, OF, PF)
    "O": lambda c, z, s, o, p: o, "B": lambda c, z, s, o, p: c, "Z": lambda c, z, s, o, p: z,
    "BE": lambda c, z, s, o, p: c or z, "S": lambda c, z, s, o, p: s, "P": lambda c, z, s, o, p: p,
    "L": lambda c, z, s, o, p: s != o, "LE": lambda c, z, s, o, p: z or s != o,
}


def _cc_expected(cc: int, flags: int) -> bool:
    name = CC[cc]
    neg = name.startswith("N")
    v = _CC_TRUTH[name[1:] if neg else name](*(bool(flags & b) for b in (CF, ZF, SF, OF, PF)))
    return (not v) if neg else bool(v)


@pytest.mark.parametrize("cc", range(16), ids=CC)
def test_setcc_truth_table(cc):
    for flags in range(64):
        fl = sum(b for i, b in enumerate((CF, PF, AF, ZF, SF, OF)) if flags >> i & 1)
        r = _run(bytes([0x0F, 0x90 | cc, 0xC7]), flags=fl, ebx=0xFFFF_FFFF)   # setcc bh
        assert _r(r, EBX) == (0xFFFF_01FF if _cc_expected(cc, fl) else 0xFFFF_00FF), (CC[cc], hex(fl))
        assert _f(r) == fl


def test_cmov_false_keeps_destination_true_loads():
    r = _run(b"\x0f\x44\xc3", eax=1, ebx=2, flags=0)              # cmovz eax, ebx (ZF = 0)
    assert _r(r, EAX) == 1
    r = _run(b"\x0f\x44\xc3", eax=1, ebx=2, flags=ZF)
    assert _r(r, EAX) == 2
    r = _run(b"\x66\x0f\x45\xc3", eax=0x1111_2222, ebx=0x3333_4444, flags=0)   # cmovnz ax, bx
    assert _r(r, EAX) == 0x1111_4444
    r = _run(b"\x0f\x44\x06", eax=5, mem=b"\x78\x56\x34\x12", flags=ZF)        # cmovz eax, [esi]
    assert _r(r, EAX) == 0x1234_5678


def test_cmov_reads_memory_even_when_false():
    """A false condition still reads the source: a limit violation faults (#GP)."""
    for flags in (0, ZF):
        for code in (b"\x67\x0f\x44\x06", b"\x66\x67\x0f\x44\x06"):     # cmovz (e)ax, [esi]
            r = _run(code, mode=16, flags=flags, eax=7, esi=0x10000)
            assert r[0] == 13 and _r(r, EAX) == 7


# ======================================================== directed: XADD / CMPXCHG*
def test_xadd():
    r = _run(b"\x0f\xc1\xd8", eax=5, ebx=7)                      # xadd eax, ebx
    assert (_r(r, EAX), _r(r, EBX)) == (12, 5)
    r = _run(b"\x0f\xc1\xc0", eax=0x8000_0000)                   # xadd eax, eax: sum wins
    assert _r(r, EAX) == 0 and _f(r) == CF | ZF | PF | OF
    r = _run(b"\x0f\xc0\x1e", ebx=0x0180, mem=b"\xff")           # xadd [esi], bl
    assert _m(r)[0] == 0x7F and _r(r, EBX) == 0x01FF and _f(r) == CF | OF   # -1 + -128


def test_cmpxchg_register_and_memory():
    r = _run(b"\x0f\xb1\xd9", eax=5, ecx=5, ebx=9)               # cmpxchg ecx, ebx: equal
    assert (_r(r, EAX), _r(r, ECX)) == (5, 9) and _f(r) & ZF
    r = _run(b"\x0f\xb1\xd9", eax=4, ecx=5, ebx=9)               # mismatch: EAX <- ECX
    assert (_r(r, EAX), _r(r, ECX)) == (5, 5) and _f(r) == CF | PF | SF | AF  # flags of 4 - 5
    r = _run(b"\x0f\xb0\x1e", eax=0x1234_5600 | 0x44, ebx=0x99, mem=b"\x44")  # cmpxchg [esi], bl
    assert _m(r)[0] == 0x99 and _f(r) & ZF
    r = _run(b"\x66\x0f\xb1\x1e", eax=0xAAAA_0001, ebx=0x99, mem=b"\x02\x00")  # mismatch, 16-bit
    assert _r(r, EAX) == 0xAAAA_0002 and _m(r)[:2] == b"\x02\x00"
    r = _run(b"\x0f\xb1\xc1", eax=3, ecx=8)                      # cmpxchg ecx, eax (src = acc)
    assert (_r(r, EAX), _r(r, ECX)) == (8, 8)


def test_cmpxchg8b():
    mem = (0x1111_2222_3333_4444).to_bytes(8, "little")
    r = _run(b"\x0f\xc7\x0e", eax=0x3333_4444, edx=0x1111_2222, ebx=0xB, ecx=0xC, mem=mem, flags=CF | SF)
    assert _m(r) == (0xC_0000_000B).to_bytes(8, "little") and _f(r) == ZF | CF | SF
    r = _run(b"\x0f\xc7\x0e", eax=0x3333_4444, edx=0x1111_2223, ebx=0xB, ecx=0xC, mem=mem, flags=ZF | OF)
    assert _m(r) == mem and (_r(r, EAX), _r(r, EDX)) == (0x3333_4444, 0x1111_2222) and _f(r) == OF
    r = _run(b"\xf0\x0f\xc7\x0e", eax=0x3333_4444, edx=0x1111_2222, ebx=1, ecx=2, mem=mem)   # lock
    assert _m(r) == (0x2_0000_0001).to_bytes(8, "little")
    r = _run(b"\x0f\xc7\xc8")                                    # register form: #UD
    assert r[0] == 6


def test_bswap():
    r = _run(b"\x0f\xcb", ebx=0x1122_3344)
    assert _r(r, EBX) == 0x4433_2211
    r = _run(b"\x66\x0f\xcb", ebx=0x1122_3344)                    # 16-bit: low word cleared
    assert _r(r, EBX) == 0x1122_0000


class _ReadOnlyData:
    """Flat 32-bit paging with CR0.WP set and the data page mapped read-only."""

    PD, PT = 0x100000, 0x101000

    def __init__(self):
        self.m = m = Machine()
        m.w32(self.PD, self.PT | 0x7)
        for i in range(1024):
            m.w32(self.PT + 4 * i, (i << 12) | (0x1 if i == DATA_BASE >> 12 else 0x3))
        self.vectors = []
        m.cpu.intercept = self._intercept

    def _intercept(self, vector, err, eip, soft, external):
        self.vectors.append((vector, err))
        self.m.cpu.request_stop(Stop(StopKind.REQUEST, "fault"))
        return True

    def run(self, code: bytes, **regs):
        m = self.m
        m.write(CODE_BASE, code + b"\x90" * 8)
        m.flat32(CODE_BASE, STACK_TOP)
        m.cpu.set_cr3(self.PD)
        m.cpu.set_cr0(m.cpu.cr0 | 0x8001_0000)                     # PG | WP
        for k, v in regs.items():
            m.cpu.regs[NAMES.index(k)] = v
        m.cpu.regs[ESI] = MEM
        m.cpu.run(1)
        return m.cpu


def test_cmpxchg_mismatch_writes_destination_and_faults_on_read_only_page():
    ro = _ReadOnlyData()
    ro.m.write(MEM, b"\x05\x00\x00\x00")
    cpu = ro.run(b"\x0f\xb1\x1e", eax=4, ebx=9)                   # mismatch: still a store cycle
    assert ro.vectors == [(14, 0x3)] and cpu.regs[EAX] == 4 and cpu.eip == CODE_BASE
    assert ro.m.read(MEM, 4) == b"\x05\x00\x00\x00"


def test_cmpxchg8b_mismatch_faults_on_read_only_page():
    ro = _ReadOnlyData()
    cpu = ro.run(b"\x0f\xc7\x0e", eax=1, edx=2)
    assert ro.vectors == [(14, 0x3)] and (cpu.regs[EAX], cpu.regs[EDX]) == (1, 2)


def test_bt_reads_read_only_page_but_bts_faults():
    ro = _ReadOnlyData()
    ro.m.write(MEM, b"\x01")
    cpu = ro.run(b"\x0f\xba\x26\x00")                             # bt dword [esi], 0
    assert ro.vectors == [] and cpu.get_eflags() & CF
    cpu = ro.run(b"\x0f\xba\x2e\x00")                             # bts dword [esi], 0
    assert ro.vectors == [(14, 0x3)]


@pytest.mark.parametrize("code,faults", [
    (b"\x0f\xba\x26\x00", False), (b"\x0f\xa3\x0e", False),         # bt [esi], 0 / bt [esi], ecx
    (b"\x0f\xba\x2e\x00", True), (b"\x0f\xab\x0e", True),           # bts ...
    (b"\x0f\xba\x36\x00", True), (b"\x0f\xbb\x0e", True),           # btr [esi], 0 / btc [esi], ecx
])
def test_bt_read_only_data_segment(code, faults):
    """BT only reads its operand; BTS/BTR/BTC need a writable segment (#GP(0))."""
    from tvmm.machine import segments
    m = Machine()
    m.write(CODE_BASE, code + b"\x90" * 8)
    m.write(MEM, b"\x01\x00\x00\x00")
    m.flat32(CODE_BASE, STACK_TOP)
    segments.set_cache(m.cpu, 3, 0x18, 0, 0xFFFFFFFF, 0xC091)        # DS: read-only data
    seen = []

    def intercept(vector, err, eip, soft, external):
        seen.append((vector, err))
        m.cpu.request_stop(Stop(StopKind.REQUEST, "fault"))
        return True
    m.cpu.intercept = intercept
    m.cpu.regs[ESI] = MEM
    m.cpu.regs[ECX] = 0
    m.cpu.run(1)
    assert seen == ([(13, 0)] if faults else [])
    assert m.read(MEM, 1) == b"\x01"


# ================================================================ differential
_VALS = (0, 1, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x0001_0000,
         0x1234_5678, 0x8000_0001, 0x0F0F_0F00)


def _put(regs: dict, reg: int, size: int, value: int) -> None:
    """Store ``value`` in register ``reg`` of ``size`` bytes (ModRM numbering)."""
    if size == 1:
        name, sh = NAMES[reg & 3], 8 * (reg >> 2)
        regs[name] = (regs[name] & ~(0xFF << sh)) | (value << sh)
    else:
        regs[NAMES[reg]] = (regs[NAMES[reg]] & ~mask(size)) | (value & mask(size))


def _rregs(rng):
    return {n: rng.getrandbits(32) for n in ("eax", "ecx", "edx", "ebx", "ebp")}


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_bt_family_matches_unicorn(mode):
    rng = random.Random(mode * 3)
    batch, single = [], []
    for reg, op in ((4, "BT"), (5, "BTS"), (6, "BTR"), (7, "BTC")):
        ev_gv = {4: 0xA3, 5: 0xAB, 6: 0xB3, 7: 0xBB}[reg]
        for size in (2, 4):
            for _ in range(40):
                value = rng.choice(_VALS + (rng.getrandbits(32),)) & mask(size)
                regs = _rregs(rng)
                fl = rand_flags(rng)
                off = rng.choice((0, 1, 15, 16, 31, 32, 33, 63, 255, rng.getrandbits(8 * size)))
                # Ev,Ib register and memory
                dst = rng.choice(VREGS)
                r2 = dict(regs)
                _put(r2, dst, size, value)
                batch.append(Case(osz(mode, size) + bytes([0x0F, 0xBA, rm_reg(reg, dst), off & 0xFF]), r2, fl,
                                  label=f"{op}{size * 8} r,ib {off & 0xFF}"))
                mem = value.to_bytes(size, "little") + rng.getrandbits(64).to_bytes(8, "little")[size:]
                code = osz(mode, size) + bytes([0x0F, 0xBA, rm_mem(mode, reg), off & 0xFF])
                batch.append(Case(code, regs, fl,
                                  mem, label=f"{op}{size * 8} m,ib {off & 0xFF}"))
                # Ev,Gv register
                src = rng.choice([r for r in VREGS if r != dst])
                r3 = dict(r2)
                _put(r3, src, size, off)
                batch.append(Case(osz(mode, size) + bytes([0x0F, ev_gv, rm_reg(src, dst)]), r3, fl,
                                  label=f"{op}{size * 8} r,r {off:#x}"))
                # Ev,Gv memory: signed offsets reaching +-1 KiB around [esi]
                moff = rng.randrange(-8192, 8192)
                r4 = dict(regs)
                _put(r4, src, size, moff & mask(size))
                page = rng.getrandbits(8 * PAGE).to_bytes(PAGE, "little")
                single.append(Case(osz(mode, size) + bytes([0x0F, ev_gv, rm_mem(mode, src)]), r4, fl,
                                   label=f"{op}{size * 8} m,r {moff}", page=page))
    diff(mode, batch)
    diff(mode, rng.sample(single, 60), batch=False, whole_page=True)


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_bsf_bsr_match_unicorn(mode):
    rng = random.Random(mode + 11)
    cases = []
    for opc in (0xBC, 0xBD):
        for size in (2, 4):
            values = _VALS + tuple(1 << i for i in range(32)) + tuple(rng.getrandbits(32) for _ in range(8))
            for value in values:
                value &= mask(size)
                regs = _rregs(rng)
                dst, src = rng.choice(VREGS), rng.choice(VREGS)
                memory = rng.random() < 0.3
                if not memory:
                    _put(regs, src, size, value)
                mem = value.to_bytes(4, "little") + b"\0" * 4
                modrm = rm_mem(mode, dst) if memory else rm_reg(dst, src)
                cases.append(Case(osz(mode, size) + bytes([0x0F, opc, modrm]), regs, rand_flags(rng), mem,
                                  label=f"{'BSF' if opc == 0xBC else 'BSR'}{size * 8} {value:#x}"))
    diff(mode, cases)


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_setcc_cmovcc_match_unicorn(mode):
    rng = random.Random(mode + 21)
    cases = []
    for cc in range(16):
        for bits in range(64):
            fl = sum(b for i, b in enumerate((CF, PF, AF, ZF, SF, OF)) if bits >> i & 1)
            regs = _rregs(rng)
            mem = rng.getrandbits(64).to_bytes(8, "little")
            if rng.random() < 0.5:
                cases.append(Case(bytes([0x0F, 0x90 | cc, rm_reg(0, rng.randrange(8))]), regs, fl, mem,
                                  label=f"SET{CC[cc]} r f={fl:#x}"))
            else:
                cases.append(Case(bytes([0x0F, 0x90 | cc, rm_mem(mode, 0)]), regs, fl, mem,
                                  label=f"SET{CC[cc]} m f={fl:#x}"))
            size = rng.choice((2, 4))
            if rng.random() < 0.3:
                modrm = rm_mem(mode, rng.choice(VREGS))
            else:
                modrm = rm_reg(rng.choice(VREGS), rng.choice(VREGS))
            cases.append(Case(osz(mode, size) + bytes([0x0F, 0x40 | cc, modrm]), regs, fl, mem,
                              label=f"CMOV{CC[cc]}{size * 8} f={fl:#x}"))
    diff(mode, cases)


def test_condition_table_matches_truth_table():
    """flags.CONDITIONS (used by SETcc/CMOVcc) against the SDM's definitions."""
    class C:
        lf_op = 0
    for cc in range(16):
        for bits in range(64):
            fl = sum(b for i, b in enumerate((CF, PF, AF, ZF, SF, OF)) if bits >> i & 1)
            c = C()
            c.eflags = fl | 2
            assert bool(CONDITIONS[cc](c)) == _cc_expected(cc, fl), (CC[cc], hex(fl))


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_xadd_cmpxchg_match_unicorn(mode):
    rng = random.Random(mode + 31)
    cases = []
    for opc, name in ((0xC0, "XADD"), (0xB0, "CMPXCHG")):
        for size in (1, 2, 4):
            for _ in range(120):
                regs = _rregs(rng)
                a = rng.choice(_VALS + (rng.getrandbits(32),)) & mask(size)
                b = rng.choice(_VALS + (a, rng.getrandbits(32))) & mask(size)
                regs_pool = range(8) if size == 1 else VREGS
                src, dst = rng.choice(regs_pool), rng.choice(regs_pool)
                memory = rng.random() < 0.4
                mem = rng.getrandbits(64).to_bytes(8, "little")
                if memory:
                    mem = b.to_bytes(size, "little") + mem[size:]
                else:
                    _put(regs, dst, size, b)
                if rng.random() < 0.6:
                    _put(regs, EAX, size, rng.choice((a, b)))     # accumulator often equal
                code = (osz(mode, size) if size > 1 else b"") + bytes([0x0F, opc | (size > 1)])
                code += bytes([rm_mem(mode, src) if memory else rm_reg(src, dst)])
                if memory and rng.random() < 0.2:
                    code = b"\xf0" + code
                cases.append(Case(code, regs, rand_flags(rng), mem, label=f"{name}{size * 8}"))
    for _ in range(150):
        regs = _rregs(rng)
        mem = rng.getrandbits(64).to_bytes(8, "little")
        if rng.random() < 0.5:
            regs["eax"] = int.from_bytes(mem[:4], "little")
            if rng.random() < 0.8:
                regs["edx"] = int.from_bytes(mem[4:], "little")
        code = (b"\xf0" if rng.random() < 0.3 else b"") + bytes([0x0F, 0xC7, rm_mem(mode, 1)])
        cases.append(Case(code, regs, rand_flags(rng), mem, label="CMPXCHG8B"))
    diff(mode, cases)


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_bswap_matches_unicorn(mode):
    rng = random.Random(mode + 41)
    cases = []
    for r in VREGS:
        for size in (2, 4):
            for _ in range(4):
                cases.append(Case(osz(mode, size) + bytes([0x0F, 0xC8 | r]), _rregs(rng), rand_flags(rng),
                                  label=f"BSWAP{size * 8} {NAMES[r]}"))
    diff(mode, cases)

