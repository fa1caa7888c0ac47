"""Shifts and rotates (tvmm/machine/ops/shift.py): directed tests, and
differential tests against unicorn in 32-bit flat and 16-bit real mode.

This module also holds the small differential harness that test_muldiv.py and
test_bits.py import (``Case``, ``diff``, ``run_tvmm`` ...): tvmm executes each
case as a single instruction with its state set directly; unicorn executes
batches of cases in one snippet (registers and flags loaded by MOV/POPFD,
results stored by MOV/PUSHFD into per-case slots of the data page), or one
case per run when a case faults or touches more memory than its 8-byte slot.

Not compared, and why:
- The store cycle of a shift whose masked count is 0 (tvmm reads a memory
  operand but does not write it; QEMU's choice differs between the CL and the
  immediate form).  Only visible on a read-only page, which the oracle's
  layout cannot express.
- Everything else about the shifts is compared, including the flags the SDM
  calls undefined (OF for counts > 1, AF, results of 16-bit SHLD/SHRD with
  counts > 16): tvmm deliberately computes what unicorn computes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from tests.diff.oracle import run_unicorn
from tests.diff.snippet import CODE_BASE, DATA_BASE, GPRS, PAGE, STACK_TOP, Snippet
from tests.machine.harness import Machine
from tvmm.machine import Stop, StopKind

CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ARITH = CF | PF | AF | ZF | SF | OF
MEM = DATA_BASE + 0xC00          # ESI/SI: where a case's memory operand lives
SLOT_REGS = ("eax", "ecx", "edx", "ebx", "ebp")
SLOT = 32                        # bytes of results per case in a batch
MAX_SLOTS = 0x800 // SLOT
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)


# ===================================================================== harness
@dataclass
class Case:
    """One instruction and the state it starts from.

    ``code`` is encoded for the mode it runs in; memory operands address
    [esi] (32-bit) / [si] (16-bit) = MEM.  ``mem`` is placed at MEM (batch
    cases: at most 8 bytes); ``page`` (single runs only) is the whole initial
    data page.  ``mask`` selects the flags compared.
    """
    code: bytes
    regs: dict = field(default_factory=dict)
    flags: int = 0
    mem: bytes = b""
    mask: int = ARITH
    label: str = ""
    page: bytes | None = None

    def initial_page(self) -> bytes:
        page = bytearray(self.page if self.page is not None else bytes(PAGE))
        off = MEM - DATA_BASE
        page[off:off + len(self.mem)] = self.mem
        return bytes(page)

    def all_regs(self) -> dict:
        r = {n: 0 for n in GPRS}
        r.update(esp=STACK_TOP, esi=MEM, edi=DATA_BASE)
        r.update(self.regs)
        return r


class _Tvmm:
    """One reusable machine (building a CPU is expensive); each case rewrites
    code, data, registers and flags, then retires exactly one instruction."""

    def __init__(self):
        self.m = None
        self.vector = None

    def _machine(self) -> Machine:
        if self.m is None or self.m.cpu.dead is not None:
            self.m = Machine()
            self.m.cpu.intercept = self._intercept
        return self.m

    def _intercept(self, vector, error_code, return_eip, soft, external):
        self.vector = vector
        self.m.cpu.request_stop(Stop(StopKind.REQUEST, f"exception {vector}"))
        return True

    def run(self, mode: int, case: Case):
        m = self._machine()
        cpu = m.cpu
        m.write(CODE_BASE, case.code + b"\xf4" * 16)    # HLT ends the decoded block
        m.write(DATA_BASE, case.initial_page())
        cpu.reset()          # real-mode segment loads would keep a 32-bit CS cache
        if mode == 32:
            m.flat32(CODE_BASE, STACK_TOP)
        else:
            m.real(0, CODE_BASE, 0, STACK_TOP)
        regs = case.all_regs()
        for i, n in enumerate(GPRS):
            cpu.regs[i] = regs[n] & 0xFFFFFFFF
        cpu.eflags = 0x2 | (case.flags & ARITH)
        cpu.lf_op = 0
        cpu._refresh()
        self.vector = None
        stop = cpu.run(1)
        assert stop.kind in (StopKind.BUDGET, StopKind.REQUEST), f"{case.label}: {stop} {stop.data}"
        eip = cpu.eip
        if self.vector is None:
            assert eip == CODE_BASE + len(case.code), f"{case.label}: eip {eip:#x}"
        else:
            assert eip == CODE_BASE, f"{case.label}: fault eip {eip:#x}"
        for i, n in ((ESP, "esp"), (ESI, "esi"), (EDI, "edi")):
            assert cpu.regs[i] == regs[n], f"{case.label}: {n} changed"
        return (cpu.regs[:], cpu.get_eflags(), m.read(DATA_BASE, PAGE), self.vector)


_TVMM = _Tvmm()


def _normalise(case: Case, regs, flags, page: bytes, vector, whole_page: bool):
    regs5 = tuple(regs[GPRS.index(n)] for n in SLOT_REGS)
    off = MEM - DATA_BASE
    data = page if whole_page else page[off:off + 8]
    return (vector, tuple(f"{v:08x}" for v in regs5), f"{flags & case.mask:03x}", data.hex())


def run_tvmm(mode: int, case: Case, whole_page: bool = False):
    regs, flags, page, vector = _TVMM.run(mode, case)
    return _normalise(case, regs, flags, page, vector, whole_page)


def uc_single(mode: int, case: Case, whole_page: bool = False):
    regs = case.all_regs()
    regs["eflags"] = 0x2 | (case.flags & ARITH)
    out = run_unicorn(Snippet(mode, case.code, regs, case.initial_page(), label=case.label))
    r = [out.regs[n] for n in GPRS]
    return _normalise(case, r, out.regs["eflags"], out.data, out.exception, whole_page)


def _p(mode: int) -> bytes:
    """Prefix making an instruction operate on 32 bits in ``mode``."""
    return b"\x66" if mode == 16 else b""


def _disp(mode: int, v: int) -> bytes:
    return v.to_bytes(4 if mode == 32 else 2, "little")


def _no_f7(v: int) -> tuple[int, int]:
    """``(x, k)`` with ``x ^ k == v`` and no 0xF7 byte in either: the oracle
    disassembles every snippet containing an F7 byte (its IDIV guard), which
    would dominate the run time of a batch."""
    k = 0
    while b"\xf7" in (v ^ k).to_bytes(4, "little") or b"\xf7" in k.to_bytes(4, "little"):
        k += 0x01010101
    return v ^ k, k


def _batch_code(mode: int, slot: int, case: Case) -> bytes:
    p = _p(mode)
    esi_d8 = 0x46 if mode == 32 else 0x44          # [esi+d8] / [si+d8]
    edi_dd = 0x87 if mode == 32 else 0x85          # [edi+d32] / [di+d16]
    mem = case.mem.ljust(8, b"\0")
    assert len(mem) == 8, "batch cases hold at most 8 bytes of memory"
    out = bytearray()
    for k in (0, 4):                                # mov dword [esi+k], imm32 (; xor ...)
        x, key = _no_f7(int.from_bytes(mem[k:k + 4], "little"))
        out += p + bytes([0xC7, esi_d8, k]) + x.to_bytes(4, "little")
        if key:
            out += p + bytes([0x81, esi_d8 | 0x30, k]) + key.to_bytes(4, "little")
    regs = case.all_regs()
    for name in SLOT_REGS:                          # mov r32, imm32 (; xor r32, imm32)
        r = GPRS.index(name)
        x, key = _no_f7(regs[name] & 0xFFFFFFFF)
        out += p + bytes([0xB8 + r]) + x.to_bytes(4, "little")
        if key:
            out += p + bytes([0x81, 0xF0 | r]) + key.to_bytes(4, "little")
    out += p + b"\x68" + (0x2 | (case.flags & ARITH)).to_bytes(4, "little") + p + b"\x9D"
    out += case.code
    base = slot * SLOT
    out += p + b"\x9C" + p + bytes([0x8F, edi_dd]) + _disp(mode, base + 20)   # pushfd; pop [slot+20]
    for j, name in enumerate(SLOT_REGS):            # mov [edi+slot+4j], r32
        out += p + bytes([0x89, edi_dd | (GPRS.index(name) << 3)]) + _disp(mode, base + 4 * j)
    for k in (0, 4):                                # copy the memory operand
        out += p + bytes([0x8B, esi_d8, k])
        out += p + bytes([0x89, edi_dd]) + _disp(mode, base + 24 + k)
    return bytes(out)


def uc_batch(mode: int, cases: list[Case]):
    """Run ``cases`` on unicorn, many per snippet; none may fault."""
    results = []
    i = 0
    while i < len(cases):
        code = bytearray()
        chunk = []
        while i < len(cases) and len(chunk) < MAX_SLOTS:
            piece = _batch_code(mode, len(chunk), cases[i])
            if len(code) + len(piece) > PAGE - 16:
                break
            code += piece
            chunk.append(cases[i])
            i += 1
        regs = {"esi": MEM, "edi": DATA_BASE, "eflags": 0x2}
        out = run_unicorn(Snippet(mode, bytes(code), regs, bytes(PAGE)))
        assert out.exception is None, f"batch faulted ({out.exception}) near {chunk[-1].label}"
        for j, case in enumerate(chunk):
            raw = out.data[j * SLOT:(j + 1) * SLOT]
            vals = [int.from_bytes(raw[4 * k:4 * k + 4], "little") for k in range(6)]
            results.append((None, tuple(f"{v:08x}" for v in vals[:5]),
                            f"{vals[5] & case.mask:03x}", raw[24:32].hex()))
    return results


def diff(mode: int, cases: list[Case], batch: bool = True, whole_page: bool = False) -> None:
    """Assert tvmm and unicorn agree on every case."""
    if batch:
        ref = uc_batch(mode, cases)
    else:
        ref = [uc_single(mode, c, whole_page) for c in cases]
    bad = []
    for case, want in zip(cases, ref):
        got = run_tvmm(mode, case, whole_page)
        if got != want:
            bad.append(f"{case.label} [{case.code.hex()}] regs={case.regs} flags={case.flags:#x} "
                       f"mem={case.mem.hex()}\n    unicorn {want}\n    tvmm    {got}")
    assert not bad, f"{len(bad)}/{len(cases)} mismatches (mode {mode}):\n" + "\n".join(bad[:12])


def osz(mode: int, size: int) -> bytes:
    """Operand-size prefix for a 16- or 32-bit operation in ``mode``."""
    return b"\x66" if (mode == 32) == (size == 2) else b""


def rm_reg(reg: int, rm: int) -> int:
    return 0xC0 | (reg << 3) | rm


def rm_mem(mode: int, reg: int) -> int:
    """ModRM for [esi] (32-bit code) or [si] (16-bit code)."""
    return (reg << 3) | (6 if mode == 32 else 4)


def rand_flags(rng: random.Random) -> int:
    return rng.choice((0, ARITH, CF, AF, OF, ZF | PF, rng.getrandbits(12) & ARITH))


SIZES = (1, 2, 4)
MODES = (32, 16)


def mask(size: int) -> int:
    return (1 << (8 * size)) - 1


# ===================================================================== directed
def _run32(code: bytes, n: int = 1, flags: int = 0, mem: bytes = b"", **regs) -> Machine:
    """Run ``n`` instructions of 32-bit flat code at CODE_BASE; ``mem`` is
    placed at MEM and ESI points at it unless ``esi`` is given."""
    m = _TVMM._machine()
    m.write(CODE_BASE, code + b"\x90" * 16)
    m.write(DATA_BASE, bytes(PAGE))
    m.write(MEM, mem)
    m.cpu.reset()
    m.flat32(CODE_BASE, STACK_TOP)
    names = {n_: i for i, n_ in enumerate(GPRS)}
    for i in range(8):
        m.cpu.regs[i] = 0
    m.cpu.regs[ESP] = STACK_TOP
    m.cpu.regs[ESI] = MEM
    for k, v in regs.items():
        m.cpu.regs[names[k]] = v
    m.cpu.eflags = 0x2 | flags
    m.cpu.lf_op = 0
    stop = m.cpu.run(n)
    assert stop.kind == StopKind.BUDGET, stop
    return m


def _flags(m: Machine) -> int:
    return m.cpu.get_eflags() & ARITH


def test_shl32_by_one_sets_cf_of():
    m = _run32(b"\xd1\xe0", eax=0x80000001)          # shl eax, 1
    assert m.cpu.regs[EAX] == 2
    assert _flags(m) == CF | OF                        # bit out = 1, MSB(res)=0 != CF


def test_shl32_cl_and_flags():
    m = _run32(b"\xd3\xe3", ebx=0x00000003, ecx=30)    # shl ebx, cl
    assert m.cpu.regs[EBX] == 0xC0000000
    assert _flags(m) == SF | PF | OF                   # CF=0 (bit 2 of 3), OF = MSB ^ CF


def test_shr_sar_by_immediate():
    m = _run32(b"\xc1\xe8\x04", eax=0xF0000010)         # shr eax, 4
    assert m.cpu.regs[EAX] == 0x0F000001
    assert _flags(m) == 0                              # CF = bit 3 = 0, parity(01) odd
    m = _run32(b"\xc1\xf8\x04", eax=0xF0000018)         # sar eax, 4
    assert m.cpu.regs[EAX] == 0xFF000001
    assert _flags(m) == SF | CF


def test_shr_by_one_of_is_old_msb():
    m = _run32(b"\xd1\xe8", eax=0x80000000)
    assert m.cpu.regs[EAX] == 0x40000000
    assert _flags(m) == OF | PF


def test_count_masked_to_five_bits():
    m = _run32(b"\xd3\xe0", eax=1, ecx=33)              # 33 & 31 = 1
    assert m.cpu.regs[EAX] == 2
    m = _run32(b"\xd3\xe0", eax=1, ecx=32, flags=CF | ZF | OF)   # masked 0: nothing changes
    assert m.cpu.regs[EAX] == 1
    assert _flags(m) == CF | ZF | OF


def test_count_zero_keeps_lazy_flags():
    # add eax, ebx (0xFFFFFFFF + 1: CF ZF AF PF) ; shl ecx, cl with cl = 0
    m = _run32(b"\x01\xd8\xd3\xe1", n=2, eax=0xFFFFFFFF, ebx=1, ecx=0x100)
    assert m.cpu.regs[ECX] == 0x100
    assert _flags(m) == CF | ZF | AF | PF


def test_shift_count_zero_memory_untouched():
    m = _run32(b"\xd3\x26", ecx=0, flags=SF, mem=(0x12345678).to_bytes(4, "little"))  # shl [esi], cl
    assert m.r32(MEM) == 0x12345678
    assert _flags(m) == SF


def test_shift_memory_operand():
    m = _run32(b"\xc1\x2e\x08", mem=(0x80000080).to_bytes(4, "little"))   # shr dword [esi], 8
    assert m.r32(MEM) == 0x00800000
    assert _flags(m) == CF | PF                        # bit 7 went out last; low byte 00: even parity


def test_byte_shift_large_count():
    m = _run32(b"\xd2\xe4", eax=0x8100, ecx=9)         # shl ah, 9 -> 0, CF = 0
    assert m.cpu.regs[EAX] == 0
    assert _flags(m) == ZF | PF
    m = _run32(b"\xd2\xfc", eax=0x8100, ecx=20)        # sar ah, 20 -> FF, CF = sign
    assert m.cpu.regs[EAX] == 0xFF00
    assert _flags(m) == SF | PF | CF


def test_rol_ror_only_cf_of():
    m = _run32(b"\xd0\xc0", eax=0x40, flags=ZF | SF | AF | PF)   # rol al, 1
    assert m.cpu.regs[EAX] == 0x80
    assert _flags(m) == ZF | SF | AF | PF | OF
    m = _run32(b"\xc1\xc8\x04", eax=0x0000000F)       # ror eax, 4
    assert m.cpu.regs[EAX] == 0xF0000000
    assert _flags(m) == CF                             # OF = MSB ^ bit 30 = 0


def test_rol8_count_multiple_of_size_sets_flags():
    m = _run32(b"\xd2\xc0", eax=0x81, ecx=8)           # rol al, 8: value kept, CF = LSB
    assert m.cpu.regs[EAX] == 0x81
    assert _flags(m) == CF


def test_rcl_rcr_through_carry():
    m = _run32(b"\xd1\xd0", eax=0x80000000, flags=CF)  # rcl eax, 1
    assert m.cpu.regs[EAX] == 1
    assert _flags(m) == CF | OF
    m = _run32(b"\xd1\xd8", eax=1, flags=CF)           # rcr eax, 1
    assert m.cpu.regs[EAX] == 0x80000000
    assert _flags(m) == CF | OF
    m = _run32(b"\xd2\xd0", eax=0x81, ecx=9, flags=CF)  # rcl al, 9: 9 mod 9 = 0
    assert m.cpu.regs[EAX] == 0x81
    assert _flags(m) == CF
    m = _run32(b"\x66\xd3\xd8", eax=0x0001, ecx=17)    # rcr ax, 17: 17 mod 17 = 0
    assert m.cpu.regs[EAX] == 1 and _flags(m) == 0
    m = _run32(b"\xd2\xd0", eax=0x01, ecx=10, flags=0)  # rcl al, 10 == rcl al, 1
    assert m.cpu.regs[EAX] == 0x02


def test_sal_alias_reg6():
    m = _run32(b"\xd1\xf0", eax=0x40000000)             # D1 /6
    assert m.cpu.regs[EAX] == 0x80000000
    assert _flags(m) == SF | PF | OF


def test_shld_shrd_32():
    m = _run32(b"\x0f\xa4\xd8\x08", eax=0x11223344, ebx=0xAABBCCDD)   # shld eax, ebx, 8
    assert m.cpu.regs[EAX] == 0x223344AA
    assert _flags(m) & CF == 1                         # bit 24 of 0x11223344 = 1
    m = _run32(b"\x0f\xad\xd8", eax=0x11223344, ebx=0xAABBCCDD, ecx=12)  # shrd eax, ebx, cl
    assert m.cpu.regs[EAX] == 0xCDD11223
    assert _flags(m) & CF == 0                         # bit 11 of 0x...3344 = 0
    m = _run32(b"\x0f\xa5\xd8", eax=5, ebx=6, ecx=32, flags=OF)   # count 0 after masking
    assert m.cpu.regs[EAX] == 5 and _flags(m) == OF


def test_shld_shrd_16_large_count_is_deterministic():
    # 16-bit with count 20 (> 16, undefined): shifts dest:src:dest.
    m = _run32(b"\x66\x0f\xa4\xd8\x14", eax=0x1234, ebx=0xABCD)    # shld ax, bx, 20
    assert m.cpu.regs[EAX] & 0xFFFF == 0xBCD1
    m = _run32(b"\x66\x0f\xac\xd8\x14", eax=0x1234, ebx=0xABCD)    # shrd ax, bx, 20
    assert m.cpu.regs[EAX] & 0xFFFF == 0x4ABC


def _cc_truth(cc: int, f: int) -> bool:
    c, z, s_, o, p = (bool(f & b) for b in (CF, ZF, SF, OF, PF))
    v = (o, c, z, c or z, s_, p, s_ != o, z or s_ != o)[cc >> 1]
    return v != bool(cc & 1)


@pytest.mark.parametrize("shift", [b"\xd3\xe0", b"\xd3\xe8", b"\xd3\xf8", b"\xd2\xe0", b"\xd2\xf8",
                                   b"\x66\xd3\xe8", b"\xc1\xe0\x01", b"\xd1\xf8"],
                         ids=["shl32", "shr32", "sar32", "shl8", "sar8", "shr16", "shl1", "sar1"])
def test_lazy_shift_flags_seen_by_every_consumer(shift):
    """SHL/SHR/SAR record flags lazily: SETcc (all 16 conditions), ADC (CF via
    get_cf) and Jcc must see exactly what materializing the flags gives."""
    rng = random.Random(shift)
    for _ in range(40):
        v = rng.choice((0, 1, 0x80, 0x8000_0000, 0xFFFF_FFFF, 0x4000_0001, rng.getrandbits(32)))
        c = rng.choice((1, 2, 7, 8, 9, 15, 16, 31, rng.getrandbits(5) or 1))
        flags = _flags(_run32(shift, eax=v, ecx=c))
        for cc in range(16):
            m = _run32(shift + bytes([0x0F, 0x90 | cc, 0xC3]), n=2, eax=v, ecx=c, ebx=0xFF)   # setcc bl
            assert m.cpu.regs[EBX] == int(_cc_truth(cc, flags)), (cc, hex(v), c, hex(flags))
        m = _run32(shift + b"\x83\xd2\x00", n=2, eax=v, ecx=c, edx=0x10)     # adc edx, 0
        assert m.cpu.regs[EDX] == 0x10 + (flags & CF)
        m = _run32(shift + b"\x7c\x02" + b"\x90\x90", n=2, eax=v, ecx=c)      # jl +2
        assert m.cpu.eip == CODE_BASE + len(shift) + 2 + (2 if _cc_truth(12, flags) else 0)


def test_translator_emitter_matches_handler():
    """shift.emit_shift_reg_imm (inline source for a block translator) does
    exactly what the registered handler does, flags record included."""
    from tvmm.machine.decoder import decode
    from tvmm.machine.ops.shift import emit_shift_reg_imm

    class Cpu:
        pass
    rng = random.Random(3)
    for op, ext in (("SHL", 4), ("SHR", 5), ("SAR", 7)):
        for size in SIZES:
            for count in (0, 1, 5, 8, 9, 16, 31, 32, 40):
                for rm in range(8):
                    out = emit_shift_reg_imm(op, size, rm, count)
                    assert (out is None) == (count & 31 == 0)
                    if out is None:
                        continue
                    body, flag_lines = out
                    src = "def f(cpu):\n    regs = cpu.regs\n" + "".join(f"    {ln}\n" for ln in body + flag_lines)
                    ns = {}
                    exec(src, ns)
                    code = (osz(32, size) if size > 1 else b"") + bytes([0xC0 | (size > 1), rm_reg(ext, rm), count])
                    d = decode(code, 0, True)
                    for _ in range(4):
                        a, b = Cpu(), Cpu()
                        a.regs = [rng.getrandbits(32) for _ in range(8)]
                        b.regs = a.regs[:]
                        ns["f"](a)
                        d.fn(b, d)
                        assert a.regs == b.regs and (a.lf_op, a.lf_a, a.lf_b, a.lf_res) == \
                            (b.lf_op, b.lf_a, b.lf_b, b.lf_res), (op, size, count, rm)


# ================================================================= differential
_VALUES = (0, 1, 0x7F, 0x80, 0xFF, 0x8000, 0x7FFF, 0xFFFF, 0x80000000, 0x7FFFFFFF, 0xFFFFFFFF,
           0x12345678, 0xDEADBEEF, 0x00018001, 0xC0000003)
_COUNTS = (0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 24, 31, 32, 33, 63, 255)
_GRP2 = ("ROL", "ROR", "RCL", "RCR", "SHL", "SHR", "SAL", "SAR")


def _grp2_cases(mode: int, reg_field: int, seed: int) -> list[Case]:
    rng = random.Random(seed * 131 + reg_field + mode)
    cases = []
    for size in SIZES:
        for form in ("Ib", "1", "CL"):
            op = {("Ib", 1): 0xC0, ("Ib", 0): 0xC1, ("1", 1): 0xD0, ("1", 0): 0xD1,
                  ("CL", 1): 0xD2, ("CL", 0): 0xD3}[form, size == 1]
            counts = (1,) if form == "1" else _COUNTS
            for count in counts:
                for value in _VALUES:
                    value &= mask(size)
                    memory = rng.random() < 0.3
                    if memory:
                        rm_byte = rm_mem(mode, reg_field)
                        target = None
                    else:
                        target = rng.choice(range(8) if size == 1 else (EAX, ECX, EDX, EBX, EBP))
                        rm_byte = rm_reg(reg_field, target)
                    code = (osz(mode, size) if size > 1 else b"") + bytes([op, rm_byte])
                    if form == "Ib":
                        code += bytes([count])
                    regs = {n: rng.getrandbits(32) for n in SLOT_REGS}
                    regs["ecx"] = (regs["ecx"] & ~0xFF) | count
                    mem = rng.getrandbits(64).to_bytes(8, "little")
                    if memory:
                        mem = value.to_bytes(size, "little") + mem[size:]
                    elif size == 1:
                        sh = 8 * (target >> 2)
                        name = GPRS[target & 3]
                        if not (form == "CL" and name == "ecx"):
                            regs[name] = (regs[name] & ~(0xFF << sh)) | (value << sh)
                    elif not (form == "CL" and target == ECX):
                        name = GPRS[target]
                        regs[name] = (regs[name] & ~mask(size)) | value
                    cases.append(Case(code, regs, rand_flags(rng), mem,
                                      label=f"{_GRP2[reg_field]}{size * 8} {form} c={count} v={value:#x}"))
    return cases


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reg_field", range(8), ids=_GRP2)
def test_grp2_matches_unicorn(mode, reg_field):
    diff(mode, _grp2_cases(mode, reg_field, 1))


def _shxd_cases(mode: int, seed: int) -> list[Case]:
    rng = random.Random(seed + mode)
    cases = []
    for opc, name in ((0xA4, "SHLD ib"), (0xA5, "SHLD cl"), (0xAC, "SHRD ib"), (0xAD, "SHRD cl")):
        for size in (2, 4):
            for count in range(0, 34):
                for _ in range(3):
                    memory = rng.random() < 0.3
                    src = rng.choice((EAX, EDX, EBX, EBP, ECX))
                    regs = {n: rng.choice((rng.getrandbits(32), 0x80000001, 0xFFFF0000, 0))
                            for n in SLOT_REGS}
                    regs["ecx"] = (regs["ecx"] & ~0xFF) | count
                    if memory:
                        rm_byte = rm_mem(mode, src)
                    else:
                        rm_byte = rm_reg(src, rng.choice((EAX, EDX, EBX, EBP, ECX)))
                    code = osz(mode, size) + bytes([0x0F, opc, rm_byte])
                    if opc in (0xA4, 0xAC):
                        code += bytes([count])
                    cases.append(Case(code, regs, rand_flags(rng), rng.getrandbits(64).to_bytes(8, "little"),
                                      label=f"{name} {size * 8} c={count}"))
    return cases


@pytest.mark.diff
@pytest.mark.parametrize("mode", MODES)
def test_shld_shrd_match_unicorn(mode):
    diff(mode, _shxd_cases(mode, 7))


@pytest.mark.diff
def test_harness_detects_a_difference():
    """The comparison is live: a case whose tvmm state is perturbed must fail."""
    case = Case(b"\xd1\xe0", {"eax": 1}, 0, label="shl eax,1")
    want = uc_batch(32, [case])[0]
    assert run_tvmm(32, case) == want
    other = Case(b"\xd1\xe0", {"eax": 2}, 0)
    assert run_tvmm(32, other) != want
