"""Control transfer (tvmm/machine/ops/control.py): near branches, calls and
returns compared with unicorn in 32-bit flat and 16-bit real mode; far
transfers, call gates, INT/IRET across rings, BOUND and SYSENTER/SYSEXIT as
directed tests against the SDM (vol. 2: CALL, JMP, RET, INT n, IRET, BOUND,
SYSENTER, SYSEXIT; vol. 3 chapter 5 for the privilege rules).

This module also holds the small helpers test_stack.py imports: ``asm`` (a
two-pass label assembler for hand-encoded bytes), ``run_tvmm`` and
``same_as_unicorn`` (differential runs of a ``Snippet``), and ``PM`` (a
protected-mode machine with a GDT, IDT and TSS for ring 0 / ring 3 tests).
"""

from __future__ import annotations

import struct

import pytest

from tests.diff.oracle import run_unicorn
from tests.diff.snippet import CODE_BASE, DATA_BASE, GPRS, PAGE, STACK_BASE, STACK_TOP, Outcome, Snippet
from tests.machine.harness import Machine, gate_desc, seg_desc
from tvmm.machine import CPU, PhysicalMemory, Stop, StopKind, segments
from tvmm.machine.boot_state import enter_flat32, enter_real
from tvmm.machine.consts import (CS, DS, ES, FS, GS, IF, MSR_SYSENTER_CS, MSR_SYSENTER_EIP, MSR_SYSENTER_ESP,
                                 NT, SS_SEG)

GP, SS, NP, BR, UD, TS = 13, 12, 11, 5, 6, 10


# ===================================================================== helpers
_SIZES = {"rel8": 1, "rel16": 2, "rel32": 4, "abs16": 2, "abs32": 4}


def asm(base: int, *items) -> tuple[bytes, dict]:
    """Assemble hand-encoded pieces with labels.

    items: ``bytes`` (emitted as is), ``"name:"`` (defines a label), or
    ``(opcode_bytes, kind, label)`` with kind rel8/rel16/rel32 (displacement
    from the end of this item to the label) or abs16/abs32 (the label's
    address).  Returns (code, {label: address}).
    """
    labels, pos = {}, base
    for it in items:
        if isinstance(it, str):
            labels[it.rstrip(":")] = pos
        elif isinstance(it, tuple):
            pos += len(it[0]) + _SIZES[it[1]]
        else:
            pos += len(it)
    out, pos = bytearray(), base
    for it in items:
        if isinstance(it, str):
            continue
        if isinstance(it, tuple):
            op, kind, label = it
            n = _SIZES[kind]
            end = pos + len(op) + n
            v = labels[label] - end if kind.startswith("rel") else labels[label]
            if kind.startswith("rel"):
                assert -(1 << (8 * n - 1)) <= v < (1 << (8 * n - 1)), f"{label} out of range"
            out += op + (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")
            pos = end
        else:
            out += it
            pos += len(it)
    return bytes(out), labels


def d32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def d16(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)


def run_tvmm(snip: Snippet, max_steps: int = 5000) -> Outcome:
    """tvmm's side of a differential run, with the oracle's memory layout.

    The code is followed by ``jmp $``; the run ends on the budget (so hot
    blocks are translated just as in a guest) or at the first exception,
    which is recorded and not delivered (like the oracle)."""
    mem = PhysicalMemory(0x10000)
    end = CODE_BASE + len(snip.code)
    mem.write_bytes(CODE_BASE, snip.code + b"\xeb\xfe")
    mem.write_bytes(DATA_BASE, snip.data)
    cpu = CPU(mem)
    if snip.mode == 32:
        enter_flat32(cpu, CODE_BASE)
    else:
        enter_real(cpu, 0, CODE_BASE)
    for i, name in enumerate(GPRS):
        cpu.regs[i] = snip.regs.get(name, STACK_TOP if name == "esp" else 0) & 0xFFFFFFFF
    cpu.set_eflags(snip.regs.get("eflags", 2))
    caught = []

    def intercept(vector, error_code, return_eip, soft, external):
        caught.append(vector)
        cpu.request_stop(Stop(StopKind.REQUEST, "exception"))
        return True

    cpu.intercept = intercept
    stop = cpu.run(max_steps)
    assert stop.kind != StopKind.ERROR, f"{stop.detail}\n{stop.data.get('traceback', '')}"
    if not caught:
        assert cpu.eip == end, f"{snip.label}: did not reach the end (eip={cpu.eip:#x})"
    regs = {n: cpu.regs[i] for i, n in enumerate(GPRS)}
    regs["eip"] = cpu.eip
    regs["eflags"] = cpu.get_eflags()
    return Outcome(regs=regs, data=mem.read_bytes(DATA_BASE, PAGE), stack=mem.read_bytes(STACK_BASE, PAGE),
                   exception=caught[0] if caught else None)


def same_as_unicorn(mode: int, code: bytes, regs: dict | None = None, data: bytes = bytes(PAGE),
                    flags_mask: int = 0xFFFFFFFF, label: str = "") -> Outcome:
    """Run ``code`` on both engines and assert identical outcomes."""
    snip = Snippet(mode, code, dict(regs or {}), data=data, flags_mask=flags_mask, label=label)
    u = run_unicorn(snip)
    o = run_tvmm(snip)
    assert o.exception == u.exception, f"{label}: exception tvmm={o.exception} unicorn={u.exception}"
    for r in GPRS + ("eip",):
        assert o.regs[r] == u.regs[r], f"{label}: {r} tvmm={o.regs[r]:#x} unicorn={u.regs[r]:#x}"
    assert o.regs["eflags"] & flags_mask == u.regs["eflags"] & flags_mask, \
        f"{label}: eflags tvmm={o.regs['eflags']:#x} unicorn={u.regs['eflags']:#x}"
    assert o.data == u.data, f"{label}: data page differs"
    assert o.stack == u.stack, f"{label}: stack page differs"
    return o


# -------------------------------------------------- protected-mode machine
GDT, IDT, TSS = 0x10000, 0x11000, 0x12000
CODE3, CODE0, GATE_FN, GATE_FN16 = 0x30000, 0x40000, 0x41000, 0x42000
STACK3, STACK0 = 0x70000, 0x80000

# selectors
K_CODE, K_DATA, U_CODE, U_DATA = 0x08, 0x10, 0x1B, 0x23
TSS_SEL = 0x28
GATE32 = 0x33          # call gate, DPL 3 -> K_CODE:GATE_FN, 2 dwords
CONF0 = 0x38           # conforming code, DPL 0
CODE16 = 0x40          # 16-bit code, DPL 0, limit 0xFFFF
GATE_DPL0 = 0x48       # call gate, DPL 0
GATE16 = 0x53          # 16-bit call gate, DPL 3 -> K_CODE:GATE_FN16, 1 word
TASK_GATE = 0x58
CODE_NP = 0x60         # non-present code, DPL 0
U_DATA16 = 0x6B        # 16-bit (B=0) DPL 3 data segment, limit 0xFFFFF (byte granular)


def call_gate(sel: int, off: int, dpl: int, count: int, type_: int = 0xC) -> bytes:
    lo, hi = struct.unpack("<II", gate_desc(sel, off, type_, dpl))
    return struct.pack("<II", lo, hi | (count & 0x1F))


class PM(Machine):
    """A 32-bit protected-mode machine with ring 0 and ring 3 segments, a
    32-bit TSS (SS0:ESP0 = K_DATA:STACK0) loaded by writing TR directly, and
    an IDT.  Exceptions (not soft interrupts) named in ``stop_vectors`` are
    recorded and stop the run (EIP stays at the faulting instruction)."""

    def __init__(self):
        super().__init__(1 << 20)
        gdt = {
            0x08: seg_desc(0, 0xFFFFFFFF, 0x9B), 0x10: seg_desc(0, 0xFFFFFFFF, 0x93),
            0x18: seg_desc(0, 0xFFFFFFFF, 0xFB), 0x20: seg_desc(0, 0xFFFFFFFF, 0xF3),
            0x28: seg_desc(TSS, 0x67, 0x8B, flags=0),
            0x30: call_gate(K_CODE, GATE_FN, 3, 2),
            0x38: seg_desc(0, 0xFFFFFFFF, 0x9F),
            0x40: seg_desc(0, 0xFFFF, 0x9B, flags=0),
            0x48: call_gate(K_CODE, GATE_FN, 0, 0),
            0x50: call_gate(K_CODE, GATE_FN16, 3, 1, type_=0x4),
            0x58: gate_desc(TSS_SEL, 0, 0x5, 3),
            0x60: seg_desc(0, 0xFFFFFFFF, 0x1B),
            0x68: seg_desc(0, 0xFFFFF, 0xF3, flags=0),
        }
        for off, desc in gdt.items():
            self.write(GDT + off, desc)
        cpu = self.cpu
        cpu.gdtr_base, cpu.gdtr_limit = GDT, 0x7F
        cpu.idtr_base, cpu.idtr_limit = IDT, 0x7FF
        self.w32(TSS + 4, STACK0)
        self.w32(TSS + 8, K_DATA)
        cpu.tr_sel, cpu.tr_base, cpu.tr_limit, cpu.tr_attr = TSS_SEL, TSS, 0x67, 0x8B
        self.flat32(CODE0, STACK0)
        self.events = []
        self.stop_vectors = set(range(32))
        cpu.intercept = self._intercept

    def _intercept(self, vector, err, eip, soft, external):
        self.events.append((vector, err, soft))
        if not soft and vector in self.stop_vectors:
            self.cpu.halted = True
            self.cpu.attention = True
            return True
        return False

    def faults(self):
        """(vector, error code) of the exceptions that stopped the run."""
        return [(v, e) for v, e, soft in self.events if not soft and v in self.stop_vectors]

    def load(self, seg: int, sel: int) -> None:
        """Put the GDT descriptor ``sel`` in a segment cache (no checks)."""
        lo, hi, _ = segments.read_descriptor(self.cpu, sel)
        segments.set_cache(self.cpu, seg, sel, segments.desc_base(lo, hi), segments.desc_limit(lo, hi),
                           segments.desc_attr(hi))

    def ring3(self, eip: int = CODE3, esp: int = STACK3) -> None:
        self.load(CS, U_CODE)
        for s in (ES, SS_SEG, DS, FS, GS):
            self.load(s, U_DATA)
        self.cpu.set_cpl(3)
        self.cpu.eip, self.cpu.regs[4] = eip, esp

    def idt(self, vector: int, desc: bytes) -> None:
        self.write(IDT + 8 * vector, desc)

    def r16(self, pa: int) -> int:
        return struct.unpack("<H", self.read(pa, 2))[0]

    def stack_words(self, n: int, size: int = 4) -> list[int]:
        esp = self.cpu.regs[4]
        rd = self.r32 if size == 4 else self.r16
        return [rd(esp + size * i) for i in range(n)]


def catch_faults(m: Machine) -> list:
    """Record every event delivered on ``m`` and stop the run at the first
    one (EIP stays at a faulting instruction)."""
    events = []

    def intercept(vector, err, eip, soft, external):
        events.append((vector, err))
        m.cpu.halted = True
        m.cpu.attention = True
        return True

    m.cpu.intercept = intercept
    return events


def _state(cpu):
    return (list(cpu.regs), cpu.eip, list(cpu.seg_sel), cpu.cpl, cpu.get_eflags())


# ========================================================= Jcc vs unicorn
CC_NAMES = ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE", "S", "NS", "P", "NP", "L", "NL", "LE", "NLE")
FLAG_STATES = [0x002, 0x8D7, 0x001, 0x004, 0x040, 0x080, 0x800, 0x880, 0x041, 0x0C0, 0x8C0, 0x844, 0x081,
               0x801, 0x045, 0x8C5]


@pytest.mark.parametrize("mode", [32, 16])
@pytest.mark.parametrize("long_form", [False, True])
def test_jcc_every_condition_from_popf_flags(mode, long_form):
    """Each condition, taken or not, on flag images loaded by POPF (exact
    flags), in both the Jb and the Jz encoding."""
    for flags in FLAG_STATES:
        code = b""
        for cc in range(16):
            store = (b"\xc6\x05" + d32(DATA_BASE + cc) + b"\x01") if mode == 32 else \
                (b"\xc6\x06" + d16(DATA_BASE + cc) + b"\x01")
            push = (b"\x68" + d32(flags)) if mode == 32 else (b"\x68" + d16(flags))
            if long_form:
                rel = d32(len(store)) if mode == 32 else d16(len(store))
                jcc = bytes([0x0F, 0x80 + cc]) + rel
            else:
                jcc = bytes([0x70 + cc, len(store)])
            code += push + b"\x9d" + jcc + store
        same_as_unicorn(mode, code, label=f"flags={flags:#x} long={long_form}")


# (a, b) operand pairs for the lazy-flag path: conditions read straight from
# the recorded operation.
PAIRS32 = [(1, 2), (2, 1), (5, 5), (0x80000000, 1), (1, 0x80000000), (0x7FFFFFFF, 0xFFFFFFFF),
           (0xFFFFFFFF, 1), (0, 0), (0x80, 0x7F)]


@pytest.mark.parametrize("op", [b"\x39\xd8", b"\x01\xd8", b"\x29\xd8", b"\x21\xd8", b"\x31\xd8", b"\x40",
                                b"\x48", b"\x11\xd8", b"\x19\xd8"],
                         ids=["cmp", "add", "sub", "and", "xor", "inc", "dec", "adc", "sbb"])
def test_jcc_every_condition_after_arithmetic_32(op):
    code = b""
    k = 0
    for a, b in PAIRS32:
        for cc in range(16):
            store = b"\xc6\x05" + d32(DATA_BASE + k) + b"\x01"
            k += 1
            code += b"\xb8" + d32(a) + b"\xbb" + d32(b) + op + bytes([0x70 + cc, len(store)]) + store
    same_as_unicorn(32, code, label=op.hex())


@pytest.mark.parametrize("op", [b"\x39\xd8", b"\x01\xd8", b"\x29\xd8"], ids=["cmp", "add", "sub"])
def test_jcc_after_arithmetic_16(op):
    code = b""
    k = 0
    for a, b in [(1, 2), (2, 1), (0x8000, 1), (1, 0x8000), (0x7FFF, 0xFFFF), (3, 3)]:
        if True:
            for cc in range(16):
                store = b"\xc6\x06" + d16(DATA_BASE + k) + b"\x01"
                k += 1
                code += b"\xb8" + d16(a) + b"\xbb" + d16(b) + op + bytes([0x70 + cc, len(store)]) + store
    same_as_unicorn(16, code)


def test_jcc_in_a_hot_loop_translated():
    """A counted loop closed by JNZ/JB/JL runs long enough to be translated."""
    code, _ = asm(CODE_BASE,
                  b"\xb9" + d32(40),                 # mov ecx, 40
                  b"\x31\xc0",                       # xor eax, eax
                  "top:", b"\x83\xc0\x03",           # add eax, 3
                  b"\x49",                           # dec ecx
                  (b"\x75", "rel8", "top"),          # jnz top
                  b"\xbb" + d32(0),                  # mov ebx, 0
                  "l2:", b"\x43",                    # inc ebx
                  b"\x83\xfb\x19",                   # cmp ebx, 25
                  (b"\x0f\x82", "rel32", "l2"),      # jb l2
                  b"\xba" + d32(-30),                # mov edx, -30
                  "l3:", b"\x42",                    # inc edx
                  b"\x83\xfa\x05",                   # cmp edx, 5
                  (b"\x7c", "rel8", "l3"))           # jl l3
    o = same_as_unicorn(32, code)
    assert o.regs["eax"] == 120 and o.regs["ebx"] == 25 and o.regs["edx"] == 5


# ============================================ JMP / CALL / RET vs unicorn
def _call_program_32():
    return asm(CODE_BASE,
               b"\xb8" + d32(1),                         # mov eax, 1
               (b"\xe8", "rel32", "f1"),                 # call f1
               b"\x83\xc0\x10",                          # add eax, 0x10
               (b"\xbb", "abs32", "f2"),                 # mov ebx, f2
               b"\x6a\x07",                              # push 7 (argument)
               b"\xff\xd3",                              # call ebx
               (b"\xc7\x05" + d32(DATA_BASE), "abs32", "f3"),   # mov dword [DATA], f3
               b"\xff\x15" + d32(DATA_BASE),             # call [DATA]
               (b"\xc7\x05" + d32(DATA_BASE + 4), "abs32", "j1"),
               b"\xff\x25" + d32(DATA_BASE + 4),         # jmp [DATA+4]
               b"\x90" * 3,
               "j1:", (b"\xbe", "abs32", "j2"),          # mov esi, j2
               b"\xff\xe6",                              # jmp esi
               b"\x90",
               "j2:", (b"\xe9", "rel32", "done"),        # jmp near done
               "f1:", b"\x83\xc0\x02", b"\xc3",          # add eax, 2; ret
               "f2:", b"\x03\x44\x24\x04", b"\xc2\x04\x00",   # add eax, [esp+4]; ret 4
               "f3:", b"\x8b\x0c\x24", b"\xc3",          # mov ecx, [esp]; ret
               "done:", (b"\xeb", "rel8", "end"),
               b"\x90" * 5,
               "end:")


def test_near_jmp_call_ret_32():
    code, _ = _call_program_32()
    o = same_as_unicorn(32, code)
    assert o.regs["eax"] == 1 + 2 + 0x10 + 7 and o.regs["esp"] == STACK_TOP


def test_near_jmp_call_ret_16():
    code, _ = asm(CODE_BASE,
                  b"\xb8" + d16(1),                      # mov ax, 1
                  (b"\xe8", "rel16", "f1"),              # call f1
                  b"\x83\xc0\x10",                       # add ax, 0x10
                  (b"\xbb", "abs16", "f2"),              # mov bx, f2
                  b"\x6a\x07",                           # push 7
                  b"\xff\xd3",                           # call bx
                  (b"\xc7\x06" + d16(DATA_BASE), "abs16", "f3"),
                  b"\xff\x16" + d16(DATA_BASE),          # call [DATA]
                  (b"\xc7\x06" + d16(DATA_BASE + 2), "abs16", "j1"),
                  b"\xff\x26" + d16(DATA_BASE + 2),      # jmp [DATA+2]
                  b"\x90",
                  "j1:", (b"\xbe", "abs16", "j2"),       # mov si, j2
                  b"\xff\xe6",                           # jmp si
                  b"\x90",
                  "j2:", (b"\xe9", "rel16", "done"),
                  "f1:", b"\x83\xc0\x02", b"\xc3",
                  "f2:", b"\x89\xe5", b"\x03\x46\x02", b"\xc2\x02\x00",   # mov bp,sp; add ax,[bp+2]; ret 2
                  "f3:", b"\x89\xe5", b"\x8b\x4e\x00", b"\xc3",            # mov cx,[bp]
                  "done:", (b"\xeb", "rel8", "end"),
                  b"\x90" * 3,
                  "end:")
    o = same_as_unicorn(16, code)
    assert o.regs["eax"] & 0xFFFF == 1 + 2 + 0x10 + 7


def test_operand_size_override_on_near_transfers():
    """66 CALL/RET in 32-bit code push/pop 16 bits and truncate EIP; in 16-bit
    code they push/pop 32 bits."""
    code32, _ = asm(CODE_BASE,
                    (b"\x66\xe8", "rel16", "f"),         # call (16-bit) f
                    b"\x66\x6a\x05",                     # push word 5
                    (b"\x66\xe8", "rel16", "g"),         # call (16-bit) g
                    (b"\xeb", "rel8", "end"),
                    "f:", b"\x8b\x04\x24", b"\x66\xc3",  # mov eax, [esp]; ret (16)
                    "g:", b"\x66\xc2\x02\x00",           # ret 2 (16)
                    "end:")
    o = same_as_unicorn(32, code32)
    assert o.regs["esp"] == STACK_TOP
    code16, _ = asm(CODE_BASE,
                    (b"\x66\xe8", "rel32", "f"),
                    (b"\xeb", "rel8", "end"),
                    "f:", b"\x66\x8b\x1e" + d16(STACK_TOP - 4), b"\x66\xc3",   # mov ebx, [sp slot]; retd
                    "end:")
    o = same_as_unicorn(16, code16)
    assert o.regs["ebx"] == CODE_BASE + 6


def test_jmp_rel16_truncates_eip_in_32_bit_code():
    """66 E9 rel16: the target wraps at 64 KiB in both directions."""
    m = Machine()
    m.write(0x1000, b"\x66\xe9" + d16(-0x1010))           # 0x1004 - 0x1010 -> 0xFFF4
    m.flat32(0x1000)
    m.run(1)
    assert m.cpu.eip == 0xFFF4
    m.write(0xF000, b"\x66\xe9" + d16(0x2000))            # 0xF004 + 0x2000 -> 0x1004
    m.flat32(0xF000)
    m.run(1)
    assert m.cpu.eip == 0x1004


# ================================================ LOOP / JCXZ vs unicorn
def test_loop_family_32():
    code, _ = asm(CODE_BASE,
                  b"\xb9" + d32(5), b"\x31\xc0",
                  "l1:", b"\x40", (b"\xe2", "rel8", "l1"),            # loop: eax = 5
                  b"\xb9" + d32(0x10003),
                  "l2:", b"\x43", (b"\x67\xe2", "rel8", "l2"),        # a16 loop: CX only, 3 times
                  b"\xb9" + d32(10), b"\x31\xd2",
                  "l3:", b"\x42", b"\x83\xfa\x04", (b"\xe0", "rel8", "l3"),   # loopnz until edx == 4
                  b"\xb9" + d32(6), b"\x31\xf6",
                  "l4:", b"\x46", b"\x39\xc0", (b"\xe1", "rel8", "l4"),       # loopz (ZF=1 each time)
                  b"\x89\xcf",                                                  # mov edi, ecx (0)
                  b"\xb9" + d32(0), (b"\xe3", "rel8", "s1"), b"\xbd" + d32(1),  # jecxz taken
                  "s1:", b"\xb9" + d32(0x10000), (b"\x67\xe3", "rel8", "s2"),   # jcxz (CX = 0) taken
                  b"\xbd" + d32(2),
                  "s2:", b"\xb9" + d32(1), (b"\xe3", "rel8", "s3"), b"\x45",    # not taken: inc ebp
                  "s3:", b"\xb9" + d32(1), (b"\xe2", "rel8", "s3"))             # loop falls through at 0
    o = same_as_unicorn(32, code)
    assert o.regs["eax"] == 5 and o.regs["ebx"] == 3 and o.regs["edx"] == 4 and o.regs["esi"] == 6
    assert o.regs["ecx"] == 0 and o.regs["ebp"] == 1


def test_loop_family_16():
    code, _ = asm(CODE_BASE,
                  b"\x66\xb9" + d32(0x20004), b"\x31\xc0",
                  "l1:", b"\x40", (b"\xe2", "rel8", "l1"),
                  b"\x66\xb9" + d32(3),
                  "l2:", b"\x43", (b"\x67\xe2", "rel8", "l2"),
                  b"\xb9" + d16(10), b"\x31\xd2",
                  "l3:", b"\x42", b"\x83\xfa\x04", (b"\xe0", "rel8", "l3"),
                  b"\x66\xb9" + d32(0x10000), (b"\xe3", "rel8", "s1"), b"\xbd" + d16(1),
                  "s1:", (b"\x67\xe3", "rel8", "s2"), b"\xbe" + d16(1),   # jecxz not taken (ECX != 0)
                  "s2:")
    o = same_as_unicorn(16, code)
    assert o.regs["eax"] & 0xFFFF == 4 and o.regs["ecx"] == 0x10000 and o.regs["ebx"] & 0xFFFF == 3


# ========================================== CS limit and precise faults
def _limited_cs(m: Machine, limit: int = 0x1FFF) -> None:
    segments.set_cache(m.cpu, CS, 0x08, 0, limit, 0x409B)   # 32-bit, byte-granular limit


@pytest.mark.parametrize("code", [
    b"\xe9" + d32(0x2100 - 0x1005),          # jmp rel32
    b"\xeb\x7f",                             # jmp rel8 (placed at 0x1F90: 0x1F92 + 0x7F)
    b"\x0f\x84" + d32(0x2100 - 0x1006),      # jz rel32, taken
    b"\xe8" + d32(0x2100 - 0x1005),          # call rel32
    b"\xff\xe0",                              # jmp eax
    b"\xff\xd0",                              # call eax
    b"\xc3",                                  # ret (target on the stack)
    b"\xc2\x08\x00",                          # ret 8
    b"\xe2\x7f",                              # loop (ecx = 5; at 0x1F90 like jmp rel8)
], ids=["jmp32", "jmp8", "jz32", "call32", "jmp_reg", "call_reg", "ret", "ret_imm", "loop"])
def test_near_target_beyond_cs_limit_is_gp0_and_changes_nothing(code):
    m = PM()
    base = 0x1F90 if code[:1] in (b"\xeb", b"\xe2") else 0x1000
    if code[:1] in (b"\xe9", b"\xe8") or code[:2] == b"\x0f\x84":
        code = code[:-4] + d32(0x2100 - (base + len(code)))
    m.write(base, code)
    m.w32(0x5000, 0x2100)                     # return address for RET
    _limited_cs(m)
    m.cpu.eip, m.cpu.regs[4] = base, 0x5000
    m.cpu.regs[0], m.cpu.regs[1] = 0x2100, 5
    m.cpu.set_eflags(0x42)                    # ZF for jz
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(GP, 0)]
    assert _state(m.cpu) == before


def test_jcc_not_taken_beyond_limit_does_not_fault():
    m = PM()
    m.write(0x1000, b"\x0f\x84" + d32(0x2100 - 0x1006) + b"\x90")
    _limited_cs(m)
    m.cpu.eip = 0x1000
    m.run(2)
    assert m.faults() == [] and m.cpu.eip == 0x1007


def test_real_mode_branch_past_64k_is_gp():
    m = Machine()
    m.write(0x1000, b"\x66\xe9" + d32(0x10000))
    m.real(0, 0x1000)
    events = catch_faults(m)
    m.run(1)
    assert events[0] == (GP, 0) and m.cpu.eip == 0x1000


def test_ret_whose_pop_faults_leaves_esp():
    m = PM()
    m.write(0x1000, b"\xc3")
    segments.set_cache(m.cpu, SS_SEG, K_DATA, 0, 0x4FFF, 0x4093)
    m.cpu.regs[4] = 0x4FFE                    # a 4-byte pop would cross the SS limit
    m.cpu.eip = 0x1000
    m.run(1)
    assert m.faults() == [(SS, 0)]
    assert m.cpu.regs[4] == 0x4FFE and m.cpu.eip == 0x1000


def test_call_whose_push_faults_leaves_eip_and_esp():
    m = PM()
    m.write(0x1000, b"\xe8" + d32(0x100))
    segments.set_cache(m.cpu, SS_SEG, K_DATA, 0x100000, 0xFFFF, 0x4093)
    m.cpu.regs[4] = 2
    m.cpu.eip = 0x1000
    m.run(1)
    assert m.faults() == [(SS, 0)]
    assert m.cpu.regs[4] == 2 and m.cpu.eip == 0x1000


# ====================================================== far: real mode
def test_real_mode_far_jmp_call_retf_vs_unicorn():
    # CS = 0 at start; far targets use segment 0x0100 (linear 0x1000 + offset).
    code, lab = asm(CODE_BASE,
                    b"\xb8" + d16(1),
                    b"\x9a" + d16(0x40) + d16(0x0100),              # call far 0100:0040 (= f1)
                    b"\xc7\x06" + d16(DATA_BASE) + d16(0x50),       # mov word [DATA], 0x50
                    b"\xc7\x06" + d16(DATA_BASE + 2) + d16(0x0100),  # mov word [DATA+2], 0x0100
                    b"\x6a\x09",                                    # push 9
                    b"\xff\x1e" + d16(DATA_BASE),                   # call far [DATA] (= f2, retf 2)
                    b"\x66\x9a" + d32(0x60) + d16(0x0100),          # call far (32-bit) 0100:0060 (= f3)
                    b"\xea" + d16(0x70) + d16(0x0100))              # jmp far 0100:0070 (= end)
    assert len(code) < 0x40
    code = code.ljust(0x40, b"\x90")
    code += (b"\x83\xc0\x02\xcb").ljust(0x10, b"\x90")               # f1: add ax, 2; retf
    code += (b"\x89\xe5\x03\x46\x04\xca\x02\x00").ljust(0x10, b"\x90")   # f2: add ax, [bp+4]; retf 2
    code += (b"\x83\xc0\x40\x66\xcb").ljust(0x10, b"\x90")           # f3: add ax, 0x40; retfd
    code += b"\xea" + d16(CODE_BASE + 0x75) + d16(0)                # 0x70: jmp far 0000:1075 (end)
    o = same_as_unicorn(16, code)
    assert o.regs["eax"] == 1 + 2 + 9 + 0x40 and o.regs["esp"] == STACK_TOP


# ================================================ far: protected mode
def test_pm_far_jmp_to_16_bit_code_and_back():
    m = PM()
    m.write(CODE0, b"\xea" + d32(0x5000) + d16(CODE16))                       # jmp 0x40:0x5000
    m.write(0x5000, b"\x66\xea" + d32(CODE0 + 0x100) + d16(K_CODE))           # jmp dword 0x08:...
    m.run(1)
    assert m.cpu.seg_sel[CS] == CODE16 and not m.cpu.code32 and m.cpu.eip == 0x5000
    m.run(1)
    assert m.cpu.seg_sel[CS] == K_CODE and m.cpu.code32 and m.cpu.eip == CODE0 + 0x100


def test_pm_far_call_and_retf_same_privilege_32_and_16():
    m = PM()
    m.write(CODE0, b"\x9a" + d32(0x5000) + d16(K_CODE) + b"\x66\x9a" + d16(0x6000) + d16(CODE16))
    m.write(0x5000, b"\xcb")                           # retf
    m.write(0x6000, b"\xcb")                           # retf in 16-bit code = 16-bit retf
    m.run(1)
    assert m.cpu.eip == 0x5000 and m.stack_words(2) == [CODE0 + 7, K_CODE]
    assert m.cpu.regs[4] == STACK0 - 8
    m.run(1)
    assert m.cpu.eip == CODE0 + 7 and m.cpu.regs[4] == STACK0
    m.run(1)
    assert m.cpu.seg_sel[CS] == CODE16 and m.cpu.eip == 0x6000
    assert m.stack_words(2, 2) == [(CODE0 + 13) & 0xFFFF, K_CODE] and m.cpu.regs[4] == STACK0 - 4
    # RETF in 16-bit code pops a 16-bit IP: the return lands at (CODE0 + 13) & 0xFFFF
    m.run(1)
    assert m.cpu.seg_sel[CS] == K_CODE and m.cpu.code32 and m.cpu.eip == (CODE0 + 13) & 0xFFFF
    assert m.cpu.regs[4] == STACK0


def test_pm_far_jmp_and_call_via_memory_pointer():
    m = PM()
    m.write(0x9000, d32(0x5000) + d16(K_CODE))
    m.write(CODE0, b"\xff\x1d" + d32(0x9000))          # call far [0x9000]
    m.write(0x5000, b"\xff\x2d" + d32(0x9006))          # jmp far [0x9006]
    m.write(0x9006, d32(0x6000) + d16(CONF0))
    m.run(2)
    assert m.cpu.eip == 0x6000 and m.cpu.seg_sel[CS] == CONF0 and m.cpu.cpl == 0
    assert m.stack_words(2) == [CODE0 + 6, K_CODE]


def test_far_call_privilege_rules_for_code_segments():
    # ring 3 -> non-conforming DPL 0: #GP(sel); -> conforming DPL 0: CPL stays 3, RPL becomes 3
    m = PM()
    m.write(CODE3, b"\x9a" + d32(0x5000) + d16(K_CODE))
    m.ring3()
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(GP, K_CODE)] and _state(m.cpu) == before
    m = PM()
    m.write(CODE3, b"\x9a" + d32(0x5000) + d16(CONF0))
    m.write(0x5000, b"\xcb")
    m.ring3()
    m.run(1)
    assert m.faults() == [] and m.cpu.cpl == 3 and m.cpu.seg_sel[CS] == CONF0 | 3 and m.cpu.eip == 0x5000
    assert m.stack_words(2) == [CODE3 + 7, U_CODE]
    m.run(1)
    assert m.cpu.seg_sel[CS] == U_CODE and m.cpu.eip == CODE3 + 7 and m.cpu.regs[4] == STACK3


@pytest.mark.parametrize("sel,expect", [
    (0, (GP, 0)),                          # null selector
    (0x200, (GP, 0x200)),                  # beyond the GDT limit
    (K_DATA, (GP, K_DATA)),                # a data segment
    (CODE_NP, (NP, CODE_NP)),              # not present
    (TSS_SEL, (GP, TSS_SEL)),              # the running task's TSS is busy
    (TASK_GATE, (GP, TSS_SEL)),            # a task gate to it: #GP(the TSS's selector)
    (K_CODE | 3, (GP, K_CODE)),            # RPL > CPL? (CPL 0: RPL 3 > 0)
], ids=["null", "limit", "data", "np", "tss", "taskgate", "rpl"])
def test_far_jmp_faults(sel, expect):
    m = PM()
    m.write(CODE0, b"\xea" + d32(0x5000) + d16(sel))
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [expect] and _state(m.cpu) == before


def test_far_jmp_offset_beyond_target_limit_is_gp0():
    m = PM()
    m.write(CODE0, b"\xea" + d32(0x10000) + d16(CODE16))
    m.run(1)
    assert m.faults() == [(GP, 0)] and m.cpu.eip == CODE0 and m.cpu.seg_sel[CS] == K_CODE


def test_call_gate_from_ring3_to_ring0_and_retf_back():
    """CALLF through a DPL-3 32-bit call gate copying 2 dwords: the ring-0
    stack comes from the TSS and holds, from ESP up: EIP, CS, the two
    parameters (in their original order), the old ESP and SS.  RETF 8 goes
    back, releasing the parameters on the ring-3 stack."""
    m = PM()
    m.write(CODE3, b"\x68" + d32(0x11111111) + b"\x68" + d32(0x22222222) + b"\x9a" + d32(0) + d16(GATE32))
    m.write(GATE_FN, b"\xca\x08\x00")                   # retf 8
    m.ring3()
    m.run(3)
    cpu = m.cpu
    assert m.faults() == []
    assert cpu.cpl == 0 and cpu.seg_sel[CS] == K_CODE and cpu.eip == GATE_FN
    assert cpu.seg_sel[SS_SEG] == K_DATA and cpu.regs[4] == STACK0 - 24
    assert m.stack_words(6) == [CODE3 + 17, U_CODE, 0x22222222, 0x11111111, STACK3 - 8, U_DATA]
    m.run(1)
    assert cpu.cpl == 3 and cpu.seg_sel[CS] == U_CODE and cpu.eip == CODE3 + 17
    assert cpu.seg_sel[SS_SEG] == U_DATA and cpu.regs[4] == STACK3
    assert cpu.seg_sel[DS] == U_DATA                     # a DPL-3 data segment survives


def test_16_bit_call_gate_copies_words():
    m = PM()
    m.write(CODE3, b"\x66\x6a\x05" + b"\x9a" + d32(0) + d16(GATE16))
    m.write(GATE_FN16, b"\x66\xca\x02\x00")              # retf 2 (16-bit)
    m.ring3()
    m.run(2)
    cpu = m.cpu
    assert m.faults() == [] and cpu.cpl == 0 and cpu.eip == GATE_FN16 & 0xFFFF
    # GATE_FN16 > 0xFFFF: a 16-bit gate only has a 16-bit offset
    assert cpu.regs[4] == STACK0 - 10
    assert m.stack_words(5, 2) == [(CODE3 + 10) & 0xFFFF, U_CODE, 5, (STACK3 - 2) & 0xFFFF, U_DATA]


def test_call_gate_same_privilege_pushes_gate_sized_frame():
    m = PM()
    m.write(CODE0, b"\x66\x9a" + d16(0) + d16(GATE32 & ~3))   # 16-bit operand size, 32-bit gate
    m.run(1)
    assert m.faults() == [] and m.cpu.cpl == 0 and m.cpu.eip == GATE_FN
    assert m.cpu.regs[4] == STACK0 - 8 and m.stack_words(2) == [CODE0 + 6, K_CODE]


def test_call_gate_privilege_and_jmp_rules():
    m = PM()                                              # gate DPL 0 < CPL 3
    m.write(CODE3, b"\x9a" + d32(0) + d16(GATE_DPL0))
    m.ring3()
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(GP, GATE_DPL0)] and _state(m.cpu) == before
    m = PM()                                              # JMP through a gate to an inner ring
    m.write(CODE3, b"\xea" + d32(0) + d16(GATE32))
    m.ring3()
    m.run(1)
    assert m.faults() == [(GP, K_CODE)]
    m = PM()                                              # JMP through a gate, same ring
    m.write(CODE0, b"\xea" + d32(0) + d16(GATE32))
    m.run(1)
    assert m.faults() == [] and m.cpu.eip == GATE_FN and m.cpu.regs[4] == STACK0


def test_call_gate_with_bad_tss_stack_is_ts_and_commits_nothing():
    m = PM()
    m.w32(TSS + 8, U_DATA)                                # SS0 with RPL/DPL 3
    m.write(CODE3, b"\x9a" + d32(0) + d16(GATE32))
    m.ring3()
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(10, U_DATA & ~3)] and _state(m.cpu) == before


def test_retf_to_outer_ring_nulls_inner_data_segments():
    m = PM()
    m.write(CODE0, b"\x68" + d32(U_DATA) + b"\x68" + d32(STACK3) + b"\x68" + d32(U_CODE)
            + b"\x68" + d32(CODE3) + b"\xcb")
    m.run(5)
    cpu = m.cpu
    assert m.faults() == []
    assert cpu.cpl == 3 and cpu.seg_sel[CS] == U_CODE and cpu.eip == CODE3
    assert cpu.seg_sel[SS_SEG] == U_DATA and cpu.regs[4] == STACK3
    for s in (ES, DS, FS, GS):                             # flat32 left K_DATA (DPL 0) in them
        assert cpu.seg_sel[s] == 0 and cpu.seg_hi[s] == -1


def test_retf_to_inner_ring_is_gp():
    m = PM()
    m.write(CODE3, b"\x6a\x08\x68" + d32(0x5000) + b"\xcb")
    m.ring3()
    m.run(3)
    assert m.faults() == [(GP, K_CODE)] and m.cpu.cpl == 3 and m.cpu.eip == CODE3 + 7


# ============================================================ INT / IRET
def _trap_gate(dpl: int, off: int = CODE0) -> bytes:
    return gate_desc(K_CODE, off, 0xF, dpl)


def test_int_from_ring3_through_trap_gate_and_iret_back():
    m = PM()
    m.idt(0x80, _trap_gate(3))
    m.write(CODE3, b"\xcd\x80\x90")
    m.write(CODE0, b"\xcf")                               # iretd
    m.ring3()
    cpu = m.cpu
    cpu.set_eflags(IF | 0x1 | 0x40)                       # IF, CF, ZF
    eflags = cpu.get_eflags()
    m.run(1)
    assert cpu.cpl == 0 and cpu.seg_sel[CS] == K_CODE and cpu.eip == CODE0
    assert cpu.seg_sel[SS_SEG] == K_DATA and cpu.regs[4] == STACK0 - 20
    assert m.stack_words(5) == [CODE3 + 2, U_CODE, eflags, STACK3, U_DATA]
    assert cpu.get_eflags() & IF                          # a trap gate leaves IF alone
    m.run(1)
    assert cpu.cpl == 3 and cpu.seg_sel[CS] == U_CODE and cpu.eip == CODE3 + 2
    assert cpu.seg_sel[SS_SEG] == U_DATA and cpu.regs[4] == STACK3
    assert cpu.get_eflags() == eflags
    assert m.faults() == []


def test_int_through_dpl0_gate_from_ring3_is_gp():
    m = PM()
    m.idt(0x81, _trap_gate(0))
    m.write(CODE3, b"\xcd\x81")
    m.ring3()
    m.run(1)
    assert m.faults() == [(GP, 0x81 * 8 + 2)]
    assert m.cpu.cpl == 3 and m.cpu.eip == CODE3 and m.cpu.regs[4] == STACK3


def test_int3_and_into():
    m = PM()
    m.idt(3, _trap_gate(3, 0x5000))
    m.idt(4, _trap_gate(3, 0x6000))
    m.write(CODE0, b"\xce\xcc")                           # into (OF clear: nothing); int3
    m.run(2)
    assert m.cpu.eip == 0x5000 and m.stack_words(1) == [CODE0 + 2]
    m = PM()
    m.idt(4, _trap_gate(3, 0x6000))
    m.write(CODE0, b"\xce")
    m.cpu.set_eflags(0x800)
    m.run(1)
    assert m.cpu.eip == 0x6000 and m.stack_words(1) == [CODE0 + 1]
    m = PM()                                              # int3 is checked against the gate DPL
    m.idt(3, _trap_gate(0, 0x5000))
    m.write(CODE3, b"\xcc")
    m.ring3()
    m.run(1)
    assert m.faults() == [(GP, 3 * 8 + 2)]


def test_int1_is_not_subject_to_the_gate_dpl_check():
    m = PM()
    m.stop_vectors = {GP}
    m.idt(1, _trap_gate(0, 0x5000))
    m.write(CODE3, b"\xf1")
    m.ring3()
    m.run(1)
    assert m.faults() == [] and m.cpu.cpl == 0 and m.cpu.eip == 0x5000
    assert m.stack_words(2) == [CODE3 + 1, U_CODE]


def test_iret_to_outer_ring_nulls_dpl0_data_segment():
    m = PM()
    frame = [CODE3, U_CODE, 0x202, STACK3, U_DATA]
    m.write(STACK0 - 20, b"".join(d32(v) for v in frame))
    m.write(CODE0, b"\xcf")
    m.cpu.regs[4] = STACK0 - 20
    m.load(ES, U_DATA)                                   # DS keeps K_DATA (DPL 0)
    m.run(1)
    cpu = m.cpu
    assert m.faults() == [] and cpu.cpl == 3 and cpu.eip == CODE3
    assert cpu.seg_sel[DS] == 0 and cpu.seg_hi[DS] == -1
    assert cpu.seg_sel[ES] == U_DATA
    assert cpu.get_eflags() & IF


def test_iret_eflags_rules_by_cpl_and_iopl():
    # CPL 0: IOPL and IF restored
    m = PM()
    m.write(STACK0 - 12, d32(CODE0 + 0x10) + d32(K_CODE) + d32(0x3202 | 0x8D5))
    m.write(CODE0, b"\xcf")
    m.cpu.regs[4] = STACK0 - 12
    m.run(1)
    assert m.cpu.get_eflags() == 0x3202 | 0x8D5 and m.cpu.regs[4] == STACK0
    # CPL 3, IOPL 0: neither IOPL nor IF change; the arithmetic flags do
    m = PM()
    m.ring3()
    m.cpu.set_eflags(IF)
    m.write(STACK3 - 12, d32(CODE3 + 0x10) + d32(U_CODE) + d32(0x3002 | 0x41))
    m.write(CODE3, b"\xcf")
    m.cpu.regs[4] = STACK3 - 12
    m.run(1)
    assert m.faults() == [] and m.cpu.eip == CODE3 + 0x10
    assert m.cpu.get_eflags() == IF | 0x2 | 0x41
    # CPL 3, IOPL 3: IF follows the image, IOPL still does not change
    m = PM()
    m.cpu.set_eflags(0x3000 | IF)
    m.ring3()
    m.write(STACK3 - 12, d32(CODE3 + 0x10) + d32(U_CODE) + d32(0x0002))
    m.write(CODE3, b"\xcf")
    m.cpu.regs[4] = STACK3 - 12
    m.run(1)
    assert m.cpu.get_eflags() == 0x3002


def test_iret_16_bit_same_privilege():
    m = PM()
    m.write(STACK0 - 6, d16(0x1234) + d16(K_CODE) + d16(0x0ED7))
    m.write(CODE0, b"\x66\xcf")
    m.cpu.regs[4] = STACK0 - 6
    m.cpu.set_eflags(0x40000)                              # AC: above bit 15, untouched by iret16
    m.run(1)
    assert m.cpu.eip == 0x1234 and m.cpu.regs[4] == STACK0
    assert m.cpu.get_eflags() == 0x40000 | 0x0ED7 and not m.cpu.slow  # TF not in 0x0ED7


def test_iret_with_nt_or_to_vm86_past_the_16_bit_limit_faults():
    """NT: a task return; VM set in the image at CPL 0: a return to VM86
    (tests/machine/test_vm86.py), #GP(0) here because EIP is past 0xFFFF."""
    m = PM()
    m.write(STACK0 - 12, d32(CODE0) + d32(K_CODE) + d32(0x2))
    m.write(CODE0, b"\xcf")
    m.cpu.regs[4] = STACK0 - 12
    m.cpu.set_eflags(NT)
    m.run(1)
    # a task return (tasks.py): the back link (0 here) is no busy TSS
    assert m.faults() == [(TS, 0)] and m.cpu.regs[4] == STACK0 - 12
    m = PM()
    m.write(STACK0 - 12, d32(CODE0) + d32(K_CODE) + d32(0x20002))
    m.write(CODE0, b"\xcf")
    m.cpu.regs[4] = STACK0 - 12
    m.run(1)
    assert m.faults() == [(GP, 0)] and m.cpu.regs[4] == STACK0 - 12


def test_iret_to_code_with_wrong_rpl_or_ss_faults_without_changes():
    m = PM()                                               # SS RPL 3 != CS RPL ... K_DATA has DPL 0
    m.write(STACK0 - 20, b"".join(d32(v) for v in (CODE3, U_CODE, 2, STACK3, K_DATA | 3)))
    m.write(CODE0, b"\xcf")
    m.cpu.regs[4] = STACK0 - 20
    before = _state(m.cpu)
    m.run(1)
    assert m.faults() == [(GP, K_DATA)] and _state(m.cpu) == before


def test_real_mode_int_and_iret():
    m = Machine()
    m.write(0x21 * 4, d16(0x0010) + d16(0x0200))          # IVT: int 21h -> 0200:0010
    m.write(0x2010, b"\xb8\x34\x12\xcf")                   # mov ax, 0x1234; iret
    m.write(0x1000, b"\xcd\x21\x90")
    m.real(0x100, 0, sp=0x7000)
    m.cpu.set_eflags(IF | 0x1)
    m.run(1)
    cpu = m.cpu
    assert cpu.seg_sel[CS] == 0x200 and cpu.eip == 0x10 and cpu.regs[4] == 0x7000 - 6
    words = [struct.unpack("<H", m.read(0x7000 - 6 + 2 * i, 2))[0] for i in range(3)]
    assert words == [2, 0x100, IF | 0x3]
    assert not cpu.get_eflags() & IF
    m.run(2)
    assert cpu.seg_sel[CS] == 0x100 and cpu.eip == 2 and cpu.regs[4] == 0x7000
    assert cpu.regs[0] & 0xFFFF == 0x1234 and cpu.get_eflags() & IF


def test_real_mode_iret_vs_unicorn():
    code, _ = asm(CODE_BASE,
                  b"\x68" + d16(0x0ED7 | 0x2),             # push flags image
                  b"\x0e",                                   # push cs
                  (b"\x68", "abs16", "t1"),                  # push t1
                  b"\xcf",                                   # iret
                  "t1:", b"\x9c", b"\x58",                   # pushf; pop ax
                  b"\x66\x68" + d32(0x000008C3),
                  b"\x66\x6a\x00",                           # push dword cs (0)
                  (b"\x66\x68", "abs32", "t2"),
                  b"\x66\xcf",                               # iretd
                  "t2:")
    same_as_unicorn(16, code)


# ================================================================ BOUND
@pytest.mark.parametrize("mode", [32, 16])
def test_bound_vs_unicorn(mode):
    data = bytearray(PAGE)
    if mode == 32:
        data[0:8] = d32(-5) + d32(10)
        ins = b"\x62\x05" + d32(DATA_BASE)                 # bound eax, [DATA]
    else:
        data[8:12] = d16(-5) + d16(10)
        ins = b"\x62\x06" + d16(DATA_BASE + 8)             # bound ax, [DATA+8]
    for v in (-5, 0, 10, -6, 11, 0x7FFFFFFF if mode == 32 else 0x7FFF):
        same_as_unicorn(mode, ins, regs={"eax": v & 0xFFFFFFFF}, data=bytes(data), label=f"{v}")


def test_bound_faults_with_br_at_the_instruction():
    m = PM()
    m.write(0x9000, d32(1) + d32(3) + d16(0xFFFE) + d16(2))
    m.write(CODE0, b"\x62\x05" + d32(0x9000) + b"\x66\x62\x1d" + d32(0x9008) + b"\x62\x0d" + d32(0x9000))
    m.cpu.regs[0], m.cpu.regs[3], m.cpu.regs[1] = 2, 0xFFFF, 7   # bx = -1 in [-2, 2]
    m.run(3)
    assert m.faults() == [(BR, None)] and m.cpu.eip == CODE0 + 13


# ==================================================== SYSENTER / SYSEXIT
def test_sysenter_sysexit_round_trip():
    m = PM()
    cpu = m.cpu
    cpu.msr[MSR_SYSENTER_CS] = K_CODE
    cpu.msr[MSR_SYSENTER_ESP] = 0x88000
    cpu.msr[MSR_SYSENTER_EIP] = 0x5000
    m.write(CODE3, b"\x0f\x34")
    m.write(0x5000, b"\x0f\x35")
    m.ring3()
    cpu.set_eflags(IF | 0x1)
    cpu.regs[1], cpu.regs[2] = 0x71000, CODE3 + 0x40
    m.run(1)
    assert cpu.cpl == 0 and cpu.seg_sel[CS] == K_CODE and cpu.seg_sel[SS_SEG] == K_DATA
    assert cpu.eip == 0x5000 and cpu.regs[4] == 0x88000 and cpu.code32 and cpu.stack32
    assert cpu.get_eflags() == 0x3                          # IF cleared, CF kept
    m.run(1)
    assert cpu.cpl == 3 and cpu.seg_sel[CS] == K_CODE + 16 | 3 and cpu.seg_sel[SS_SEG] == K_CODE + 24 | 3
    assert cpu.eip == CODE3 + 0x40 and cpu.regs[4] == 0x71000
    assert cpu.seg_attr[CS] & 0x60 == 0x60 and cpu.seg_hi[SS_SEG] == 0xFFFFFFFF


def test_sysenter_and_sysexit_faults():
    m = PM()
    m.write(CODE0, b"\x0f\x34")                            # SYSENTER_CS = 0
    m.run(1)
    assert m.faults() == [(GP, 0)]
    m = PM()
    m.cpu.msr[MSR_SYSENTER_CS] = K_CODE
    m.write(CODE3, b"\x0f\x35")                            # SYSEXIT at CPL 3
    m.ring3()
    m.run(1)
    assert m.faults() == [(GP, 0)] and m.cpu.cpl == 3
    m = Machine()                                          # real mode
    m.cpu.msr[MSR_SYSENTER_CS] = K_CODE
    m.write(0x1000, b"\x0f\x34")
    m.real(0, 0x1000)
    events = catch_faults(m)
    m.run(1)
    assert events[0] == (GP, 0)
