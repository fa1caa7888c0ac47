"""String instructions (MOVS CMPS STOS LODS SCAS, REP forms, XLAT).

Directed tests pin down what unicorn cannot check (REP resumption under an
instruction budget, precise page faults in the middle of a REP, the bulk
paths, self-modifying code, segment limits, single-stepping); the unicorn
comparisons at the end check the architectural results of every form in
32-bit and 16-bit code.

Programs end with an undefined opcode (0F FF): its #UD is claimed by an
intercept that halts the CPU, so the tests need no other instruction family.
"""

from __future__ import annotations

import random
import struct

import pytest

from tvmm.machine import StopKind, segments
from tvmm.machine.consts import CR0_PG, DF, PTE_P, PTE_W, TF, ZF

from .harness import Machine

CODE = 0x1000
END = b"\x0f\xff"          # undefined opcode -> #UD -> intercept halts
UD = 6


def mov_r32(reg: int, v: int) -> bytes:       # mov r32, imm32
    return bytes([0xB8 + reg]) + struct.pack("<I", v & 0xFFFFFFFF)


EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)


class Box(Machine):
    """A Machine whose exceptions are recorded instead of delivered."""

    def __init__(self, mem_size: int = 4 << 20):
        super().__init__(mem_size)
        self.events = []
        self.cpu.intercept = self._intercept

    def _intercept(self, vector, err, eip, soft, external):
        self.events.append((vector, err, self.cpu.eip))
        self.cpu.halted = True
        self.cpu.attention = True
        return True

    def load32(self, code: bytes, at: int = CODE, **regs) -> int:
        """Flat 32-bit code at ``at``; returns the linear address of END."""
        self.write(at, code + END)
        self.flat32(at)
        self._regs(regs)
        return at + len(code)

    def load16(self, code: bytes, cs: int = 0x100, ip: int = 0, **regs) -> int:
        """Real-mode code at cs:ip; returns the IP of END."""
        self.write(cs * 16 + ip, code + END)
        self.real(cs, ip)
        self._regs(regs)
        return ip + len(code)

    def _regs(self, regs: dict) -> None:
        names = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
        for k, v in regs.items():
            if k == "eflags":
                self.cpu.set_eflags(v)
            else:
                self.cpu.regs[names.index(k)] = v & 0xFFFFFFFF

    def finish(self, end: int, n: int = 1_000_000):
        stop = self.cpu.run(n)
        assert stop.kind == StopKind.HALTED, f"{stop} {stop.data.get('traceback', '')}"
        assert self.events[-1] == (UD, None, end), self.events
        return self.cpu


# ------------------------------------------------------------------ REP basics
def test_rep_movsd_copies_and_advances_pointers():
    m = Box()
    src = bytes(range(256)) * 4
    m.write(0x10000, src)
    end = m.load32(b"\xf3\xa5", esi=0x10000, edi=0x20000, ecx=100)
    cpu = m.finish(end)
    assert m.read(0x20000, 400) == src[:400]
    assert m.read(0x20000 + 400, 4) == b"\0" * 4
    assert cpu.regs[ECX] == 0 and cpu.regs[ESI] == 0x10000 + 400 and cpu.regs[EDI] == 0x20000 + 400
    assert cpu.icount == 100                # one per iteration; the faulting #UD does not retire


def test_icount_counts_each_iteration():
    m = Box()
    end = m.load32(b"\xf3\xaa" + b"\x90\x90", edi=0x20000, ecx=37, eax=0x5A)
    m.finish(end)
    assert m.cpu.icount == 37 + 2
    assert m.read(0x20000, 38) == b"\x5a" * 37 + b"\0"


def test_ecx_zero_does_nothing_and_touches_no_memory():
    m = Box()
    # ESI/EDI far beyond the segment limit: any access would #GP.
    end = m.load32(b"\xf3\xa4", esi=0x7FFFFFF0, edi=0x7FFFFFF0, ecx=0)      # rep movsb
    for seg in (0, 3):
        segments.set_cache(m.cpu, seg, 0x10, 0, 0xFFFF, 0x4093)
    m.finish(end)
    assert m.cpu.regs[ESI] == 0x7FFFFFF0 and m.cpu.regs[EDI] == 0x7FFFFFF0
    assert m.cpu.icount == 1


def test_df_set_runs_downwards():
    m = Box()
    m.write(0x10000, bytes(range(64)))
    # std via set_eflags; rep movsb from the top of both buffers downwards
    end = m.load32(b"\xf3\xa4", esi=0x1003F, edi=0x2003F, ecx=64, eflags=DF | 2)
    cpu = m.finish(end)
    assert m.read(0x20000, 64) == bytes(range(64))
    assert cpu.regs[ESI] == 0x10000 - 1 and cpu.regs[EDI] == 0x20000 - 1 and cpu.regs[ECX] == 0


def test_df_set_stosw_and_lodsd():
    m = Box()
    m.write(0x10000, struct.pack("<4I", 1, 2, 3, 4))
    code = b"\x66\xf3\xab" + b"\xad" + b"\xad"     # rep stosw ; lodsd ; lodsd
    end = m.load32(code, edi=0x2000E, ecx=8, eax=0xBEEF, esi=0x1000C, eflags=DF | 2)
    cpu = m.finish(end)
    assert m.read(0x20000, 16) == struct.pack("<H", 0xBEEF) * 8
    assert cpu.regs[EDI] == 0x20000 - 2
    assert cpu.regs[EAX] == 3 and cpu.regs[ESI] == 0x10004


def test_16bit_addressing_wraps_si_di_and_keeps_upper_halves():
    m = Box()
    # real mode, ES = DS = 0x1000 (base 0x10000); DI = 0xFFFE, CX = 4:
    # bytes land at 0x1FFFE, 0x1FFFF, 0x10000, 0x10001.
    code = b"\xb0\x77" + b"\xf3\xaa"                     # mov al,0x77 ; rep stosb
    code += b"\xf3\xa5"                                  # rep movsw (cx = 0 now: nothing)
    end = m.load16(code, edi=0xABCDFFFE, ecx=0x12340004, esi=0x5555FFFF)
    segments.load_real(m.cpu, 0, 0x1000)
    segments.load_real(m.cpu, 3, 0x1000)
    cpu = m.finish(end)
    assert m.read(0x1FFFE, 2) == b"\x77\x77" and m.read(0x10000, 2) == b"\x77\x77"
    assert m.read(0x10002, 1) == b"\0"
    assert cpu.regs[EDI] == 0xABCD0002
    assert cpu.regs[ECX] == 0x12340000
    assert cpu.regs[ESI] == 0x5555FFFF


def test_16bit_lodsw_wraps_si():
    m = Box()
    m.write(0x0FFFF, b"\x11")      # never read: the offset wraps, it does not carry into 0x10000
    m.write(0x00000, b"\x22\x33")
    # DS = 0; lodsb at SI=0xFFFF then lodsw at SI=0
    end = m.load16(b"\xac\xad", esi=0xFFFF)
    cpu = m.finish(end)
    assert cpu.regs[EAX] & 0xFFFF == 0x3322
    assert cpu.regs[ESI] == 2


def test_address_size_prefix_selects_16bit_registers_in_32bit_code():
    m = Box()
    m.write(0x2000, b"\xaa" * 8)
    # a32 code, 0x67 prefix: rep movsb with SI/DI/CX
    end = m.load32(b"\x67\xf3\xa4", esi=0xFFFF2000, edi=0xFFFF3000, ecx=0xFFFF0008)
    cpu = m.finish(end)
    assert m.read(0x3000, 9) == b"\xaa" * 8 + b"\0"
    assert cpu.regs[ESI] == 0xFFFF2008 and cpu.regs[EDI] == 0xFFFF3008 and cpu.regs[ECX] == 0xFFFF0000


# ------------------------------------------------------------- REPE / REPNE
def test_repe_cmpsb_stops_at_first_difference():
    m = Box()
    a = b"hello, world!!"
    b = b"hello, World!!"
    m.write(0x10000, a)
    m.write(0x20000, b)
    end = m.load32(b"\xf3\xa6", esi=0x10000, edi=0x20000, ecx=len(a))
    cpu = m.finish(end)
    assert cpu.regs[ECX] == len(a) - 8
    assert cpu.regs[ESI] == 0x10008 and cpu.regs[EDI] == 0x20008
    f = cpu.get_eflags()
    assert not f & ZF and not f & 1           # 'w' (0x77) - 'W' (0x57): no borrow
    assert cpu.icount == 8 + 0


def test_repe_cmpsd_equal_runs_to_the_end():
    m = Box()
    data = bytes(range(200))
    m.write(0x10000, data)
    m.write(0x20000, data)
    end = m.load32(b"\xf3\xa7", esi=0x10000, edi=0x20000, ecx=50)
    cpu = m.finish(end)
    assert cpu.regs[ECX] == 0 and cpu.regs[ESI] == 0x10000 + 200
    assert cpu.get_eflags() & ZF


def test_repne_scasb_finds_the_byte():
    m = Box()
    m.write(0x20000, b"abcdefghij\0xyz")
    end = m.load32(b"\xf2\xae", edi=0x20000, ecx=0xFFFFFFFF, eax=0)   # strlen
    cpu = m.finish(end)
    assert cpu.regs[EDI] == 0x20000 + 11
    assert (~cpu.regs[ECX] & 0xFFFFFFFF) - 1 == 10
    assert cpu.get_eflags() & ZF


def test_repe_scasw_and_repne_cmps_per_element_paths():
    m = Box()
    m.write(0x20000, struct.pack("<5H", 7, 7, 7, 9, 7))
    m.write(0x30000, b"abcdXfgh")
    m.write(0x31000, b"ABCDXFGH")
    code = b"\x66\xf3\xaf"           # repe scasw
    code += mov_r32(ECX, 8) + mov_r32(ESI, 0x30000) + mov_r32(EDI, 0x31000)
    code += b"\xf2\xa6"               # repne cmpsb
    end = m.load32(code, edi=0x20000, ecx=5, eax=7)
    cpu = m.finish(end)
    assert cpu.regs[ESI] == 0x30005 and cpu.regs[EDI] == 0x31005 and cpu.regs[ECX] == 3
    assert cpu.get_eflags() & ZF


def test_repe_scasw_stops_on_mismatch():
    m = Box()
    m.write(0x20000, struct.pack("<5H", 7, 7, 7, 9, 7))
    end = m.load32(b"\x66\xf3\xaf", edi=0x20000, ecx=5, eax=7)
    cpu = m.finish(end)
    assert cpu.regs[ECX] == 1 and cpu.regs[EDI] == 0x20008
    assert not cpu.get_eflags() & ZF


# ------------------------------------------------------- page-crossing copies
@pytest.mark.parametrize("df", [0, 1])
def test_rep_movsd_and_stosd_across_pages(df):
    m = Box()
    rnd = random.Random(5)
    src = bytes(rnd.randrange(256) for _ in range(12000))
    m.write(0x10802, src)       # misaligned: some dwords straddle pages
    n = 3000
    if df:
        esi, edi = 0x10802 + 4 * (n - 1), 0x40403 + 4 * (n - 1)
    else:
        esi, edi = 0x10802, 0x40403
    code = b"\xf3\xa5" + mov_r32(EDI, 0x60ffe if not df else 0x60ffe + 4 * 999) + mov_r32(ECX, 1000)
    code += mov_r32(EAX, 0xA1B2C3D4) + b"\xf3\xab"
    end = m.load32(code, esi=esi, edi=edi, ecx=n, eflags=2 | (DF if df else 0))
    cpu = m.finish(end)
    assert m.read(0x40403, 4 * n) == src[:4 * n]
    assert m.read(0x40403 + 4 * n, 1) == b"\0" and m.read(0x40402, 1) == b"\0"
    assert m.read(0x60ffe, 4000) == struct.pack("<I", 0xA1B2C3D4) * 1000
    assert m.read(0x60ffe + 4000, 1) == b"\0" and m.read(0x60ffd, 1) == b"\0"
    step = -4 if df else 4
    assert cpu.regs[ESI] == (esi + step * n) & 0xFFFFFFFF
    assert cpu.regs[EDI] == (0x60ffe + (4 * 999 if df else 0) + step * 1000) & 0xFFFFFFFF


def _naive_movs(mem: bytearray, si: int, di: int, n: int, s: int, back: bool) -> None:
    for _ in range(n):
        mem[di:di + s] = mem[si:si + s]
        si += -s if back else s
        di += -s if back else s


@pytest.mark.parametrize("s,dist,back", [
    (1, 1, False), (1, 3, False), (2, 2, False), (4, 4, False), (4, 1, False), (4, 6, False),
    (2, 3, False), (4, 8, False), (1, -1, True), (4, -4, True), (4, -6, True), (2, -1, True),
    (4, -3, False), (1, 2, True),
])
def test_overlapping_rep_movs_has_element_by_element_semantics(s, dist, back):
    m = Box()
    rnd = random.Random(s * 100 + dist)
    base = 0x10000
    buf = bytearray(rnd.randrange(256) for _ in range(0x3000))
    m.write(base, bytes(buf))
    n = 700
    si = 0x1000 + (4 * n if back else 0) + 0x7F0
    di = si + dist
    op = {1: b"\xf3\xa4", 2: b"\x66\xf3\xa5", 4: b"\xf3\xa5"}[s]
    end = m.load32(op, at=0x100, esi=base + si, edi=base + di, ecx=n, eflags=2 | (DF if back else 0))
    m.finish(end)
    _naive_movs(buf, si, di, n, s, back)
    assert m.read(base, len(buf)) == bytes(buf)


# ------------------------------------------------------ budget and resumption
def test_budget_limited_rep_resumes():
    m = Box()
    end = m.load32(b"\xf3\xaa", edi=0x20000, ecx=20, eax=0x33)
    cpu = m.cpu
    stop = cpu.run(5)
    assert stop.kind == StopKind.BUDGET
    assert cpu.regs[ECX] == 15 and cpu.regs[EDI] == 0x20005
    assert cpu.eip == CODE and cpu.icount == 5
    assert m.read(0x20000, 6) == b"\x33" * 5 + b"\0"
    stop = cpu.run(7)
    assert stop.kind == StopKind.BUDGET and cpu.regs[ECX] == 8 and cpu.icount == 12 and cpu.eip == CODE
    m.finish(end)
    assert cpu.regs[ECX] == 0 and cpu.icount == 20
    assert m.read(0x20000, 21) == b"\x33" * 20 + b"\0"


def test_budget_resumption_is_deterministic_for_compares():
    def run(chunks):
        m = Box()
        m.write(0x10000, bytes(300) + b"x")
        m.write(0x20000, bytes(400))
        end = m.load32(b"\xf3\xa6" + b"\x90", esi=0x10000, edi=0x20000, ecx=400)
        for c in chunks:
            m.cpu.run(c)
        m.finish(end)
        return list(m.cpu.regs), m.cpu.get_eflags(), m.cpu.icount
    whole = run([])
    assert whole == run([1, 1, 7, 100]) == run([299, 1, 1])
    assert whole[0][ECX] == 99 and whole[2] == 301 + 1


def test_single_step_traps_after_each_iteration():
    m = Box()
    m.load32(b"\xf3\xab", edi=0x20000, ecx=10, eax=1, eflags=2 | TF)
    stop = m.cpu.run(1000)
    assert stop.kind == StopKind.HALTED
    assert m.events == [(1, None, CODE)]        # #DB with EIP at the REP, one iteration done
    assert m.cpu.regs[ECX] == 9 and m.cpu.regs[EDI] == 0x20004


def test_stop_request_during_rep_leaves_a_resume_point():
    from tvmm.machine import debug
    m = Box()
    # A watchpoint on the 4th element: the REP stops right after writing it.
    end = m.load32(b"\xf3\xab", edi=0x20000, ecx=1000, eax=0x01020304)
    cpu = m.cpu
    cpu.watchpoints.append((0x2000C, 4, "w"))
    debug.update_watch_pages(cpu)
    stop = cpu.run(100_000)
    assert stop.kind == StopKind.WATCHPOINT
    assert cpu.regs[ECX] == 1000 - 4 and cpu.eip == CODE and cpu.icount == 4
    cpu.watchpoints.clear()
    debug.update_watch_pages(cpu)
    m.finish(end)
    assert m.read(0x20000, 4004) == struct.pack("<I", 0x01020304) * 1000 + b"\0" * 4


# ----------------------------------------------------------------- faults
PD, PT = 0x80000, 0x81000


def _paged(m: Box, not_present=()):
    m.w32(PD, PT | PTE_P | PTE_W)
    for i in range(1024):
        if i not in not_present:
            m.w32(PT + 4 * i, (i << 12) | PTE_P | PTE_W)
    m.cpu.set_cr3(PD)
    m.cpu.set_cr0(m.cpu.cr0 | CR0_PG)


def test_page_fault_in_the_middle_of_rep_stosd_is_precise():
    m = Box()
    m.load32(b"\xf3\xab", edi=0x5800, ecx=0x400, eax=0xDEADBEEF)
    _paged(m, not_present=(6,))
    cpu = m.cpu
    stop = cpu.run(100_000)
    assert stop.kind == StopKind.HALTED
    assert m.events == [(14, 0b010, CODE)]      # write to a not-present page, supervisor
    assert cpu.cr2 == 0x6000
    assert cpu.regs[ECX] == 0x200 and cpu.regs[EDI] == 0x6000
    assert m.read(0x5800, 0x800) == struct.pack("<I", 0xDEADBEEF) * 0x200
    assert m.read(0x57FC, 4) == b"\0" * 4 and m.read(0x6000, 4) == b"\0" * 4
    assert cpu.icount == 0x200                  # the iterations before the fault retired


def test_page_fault_on_source_of_rep_movsb_with_straddling_element():
    m = Box()
    m.write(0x7000, bytes(range(256)) * 16)
    # movsd: the element at 0x7FFE straddles into the not-present page 8
    m.load32(b"\xf3\xa5", esi=0x7F02, edi=0x20000, ecx=100, eflags=2)
    _paged(m, not_present=(8,))
    stop = m.cpu.run(100_000)
    assert stop.kind == StopKind.HALTED
    assert m.events == [(14, 0, CODE)] and m.cpu.cr2 == 0x8000
    done = (0x7FFE - 0x7F02) // 4 + 0
    assert m.cpu.regs[ECX] == 100 - done
    assert m.cpu.regs[ESI] == 0x7F02 + 4 * done and m.cpu.regs[EDI] == 0x20000 + 4 * done
    assert m.read(0x20000, 4 * done) == m.read(0x7F02, 4 * done)


def test_segment_limit_ends_rep_stosb_with_gp_after_the_last_legal_byte():
    m = Box()
    m.load32(b"\xf3\xaa", edi=0xFF0, ecx=0x20, eax=0x5C)
    segments.set_cache(m.cpu, 0, 0x10, 0x30000, 0xFFF, 0x4093)     # ES: base 0x30000, limit 0xFFF
    stop = m.cpu.run(1000)
    assert stop.kind == StopKind.HALTED
    assert m.events == [(13, 0, CODE)]
    assert m.cpu.regs[ECX] == 0x10 and m.cpu.regs[EDI] == 0x1000
    assert m.read(0x30FF0, 0x11) == b"\x5c" * 0x10 + b"\0"


def test_rep_movsd_into_read_only_segment_faults_before_writing():
    m = Box()
    m.load32(b"\xf3\xa5", esi=0x10000, edi=0x20000, ecx=4)
    segments.set_cache(m.cpu, 0, 0x10, 0, 0xFFFFFFFF, 0xC091)     # ES read-only data
    m.write(0x10000, b"\x01" * 16)
    m.cpu.run(100)
    assert m.events == [(13, 0, CODE)] and m.cpu.regs[ECX] == 4
    assert m.read(0x20000, 16) == bytes(16)


# ----------------------------------------------------------------- bulk paths
def test_bulk_stosd_of_4_mib():
    m = Box(16 << 20)
    end = m.load32(b"\xf3\xab", edi=0x400000, ecx=1 << 20, eax=0x11223344)
    cpu = m.finish(end, n=10_000_000)
    assert cpu.regs[ECX] == 0 and cpu.regs[EDI] == 0x800000 and cpu.icount == 1 << 20
    pat = struct.pack("<I", 0x11223344)
    assert m.read(0x400000, 4 << 20) == pat * (1 << 20)
    assert m.read(0x800000, 4) == bytes(4) and m.read(0x3FFFFC, 4) == bytes(4)


def test_bulk_movsd_with_paging_sets_dirty_bits():
    m = Box(16 << 20)
    data = bytes(random.Random(1).randrange(256) for _ in range(0x8000))
    m.write(0x100000, data)
    end = m.load32(b"\xf3\xa5", esi=0x100000, edi=0x200000, ecx=0x2000)
    # identity-map 0-4 MiB; the mapping goes through the TLB
    m.w32(PD, PT | PTE_P | PTE_W)
    for i in range(1024):
        m.w32(PT + 4 * i, (i << 12) | PTE_P | PTE_W)
    m.cpu.set_cr3(PD)
    m.cpu.set_cr0(m.cpu.cr0 | CR0_PG)
    m.finish(end)
    assert m.read(0x200000, 0x8000) == data
    for page in range(8):
        assert m.r32(PT + 4 * (0x200 + page)) & 0x60 == 0x60       # A and D
        assert m.r32(PT + 4 * (0x100 + page)) & 0x60 == 0x20       # A only


def test_self_modifying_code_via_rep_movsb():
    m = Box()
    target = CODE + 2
    new = mov_r32(EAX, 2)
    m.write(0x30000, new)
    end = m.load32(b"\xf3\xa4" + mov_r32(EAX, 1))
    m.finish(end)                       # ECX = 0: the old code runs and is cached
    assert m.cpu.regs[EAX] == 1
    cpu = m.cpu
    cpu.halted = False
    m.events.clear()
    cpu.eip = CODE
    cpu.regs[ECX], cpu.regs[ESI], cpu.regs[EDI] = len(new), 0x30000, target
    m.finish(end)
    assert cpu.regs[EAX] == 2
    assert m.read(target, 5) == new


def test_repe_cmpsb_bulk_across_pages_and_mismatch_in_second_page():
    m = Box()
    a = bytes(random.Random(2).randrange(256) for _ in range(9000))
    b = bytearray(a)
    b[6000] ^= 0x40
    m.write(0x10123, a)
    m.write(0x30456, bytes(b))
    end = m.load32(b"\xf3\xa6", esi=0x10123, edi=0x30456, ecx=9000)
    cpu = m.finish(end)
    assert cpu.regs[ECX] == 9000 - 6001
    assert cpu.regs[ESI] == 0x10123 + 6001
    assert bool(cpu.get_eflags() & 1) == (a[6000] < b[6000])


# ----------------------------------------------------------------------- XLAT
def test_xlat_with_segment_override_and_16bit_wrap():
    m = Box()
    table = bytes((i * 7) & 0xFF for i in range(256))
    m.write(0x50000, table)
    code = b"\x64\xd7"                            # xlat fs:
    end = m.load32(code, ebx=0x100, eax=0x12345609)
    segments.set_cache(m.cpu, 4, 0x18, 0x4FF00, 0xFFFFF, 0x4093)   # FS base 0x4FF00
    cpu = m.finish(end)
    assert cpu.regs[EAX] == 0x12345600 | table[9]
    # 16-bit: BX + AL wraps at 64 KiB
    m2 = Box()
    m2.write(0x10005, b"\x99")
    m2.write(0x20005, b"\x11")
    end = m2.load16(b"\xd7", ebx=0xFFF0, eax=0x15)
    segments.load_real(m2.cpu, 3, 0x1000)
    cpu = m2.finish(end)
    assert cpu.regs[EAX] & 0xFF == 0x99


# ----------------------------------------------------------- unicorn oracle
from tests.diff.oracle import run_unicorn          # noqa: E402
from tests.diff.snippet import (CODE_BASE, DATA_BASE, GPRS, PAGE, STACK_BASE, STACK_TOP,  # noqa: E402
                                Outcome, Snippet)


_BOX: list = []


def _shared_box() -> Box:
    """A reset, zeroed 128 KiB machine, reused across examples."""
    if not _BOX:
        _BOX.append(Box(0x20000))
    m = _BOX[0]
    m.cpu.reset()
    m.cpu.icount = 0
    m.events.clear()
    m.write(0, bytes(0x20000))
    return m


def run_tvmm(snippet: Snippet) -> Outcome:
    """Like tests/diff/ours.run_ours, but ends the code with END (#UD) so only
    this family's handlers are needed.  One machine is reused (reset and
    zeroed) because building a CPU costs more than running a snippet."""
    m = _shared_box()
    m.write(CODE_BASE, snippet.code + END)
    m.write(DATA_BASE, snippet.data)
    if snippet.mode == 32:
        m.flat32(CODE_BASE)
    else:
        m.real(0, CODE_BASE)
    for i, name in enumerate(GPRS):
        m.cpu.regs[i] = snippet.regs.get(name, STACK_TOP if name == "esp" else 0) & 0xFFFFFFFF
    m.cpu.set_eflags(snippet.regs.get("eflags", 2))
    stop = m.cpu.run(10_000)
    assert stop.kind == StopKind.HALTED, stop
    regs = {n: m.cpu.regs[i] for i, n in enumerate(GPRS)}
    regs["eip"] = m.cpu.eip
    regs["eflags"] = m.cpu.get_eflags()
    vec = m.events[0][0]
    return Outcome(regs=regs, data=m.read(DATA_BASE, PAGE), stack=m.read(STACK_BASE, PAGE),
                   exception=None if vec == UD and m.cpu.eip == CODE_BASE + len(snippet.code) else vec)


OPS = {  # mnemonic -> (byte opcode, word/dword opcode)
    "movs": (0xA4, 0xA5), "cmps": (0xA6, 0xA7), "stos": (0xAA, 0xAB),
    "lods": (0xAC, 0xAD), "scas": (0xAE, 0xAF),
}


def _cases():
    for mode in (32, 16):
        for op in OPS:
            for size in (1, 2, 4):
                for rep in (None, 0xF3, 0xF2):
                    for df in (0, 1):
                        for a16 in ((False, True) if mode == 32 else (True, False)):
                            yield mode, op, size, rep, df, a16


def _snippet(mode, op, size, rep, df, a16, seed):
    rnd = random.Random(seed)
    code = b""
    if (size == 4) == (mode == 16) and size != 1:
        code += b"\x66"
    if a16 != (mode == 16):
        code += b"\x67"
    if rep:
        code += bytes([rep])
    code += bytes([OPS[op][0 if size == 1 else 1]])
    data = bytearray(rnd.randrange(4) for _ in range(PAGE))      # small alphabet: matches happen
    # make the compare ops run a while before terminating
    data[0x100:0x180] = data[0x800:0x880]
    count = rnd.choice([0, 1, 3, 17, 40])
    if df:
        si, di = DATA_BASE + 0x180, DATA_BASE + 0x880
    else:
        si, di = DATA_BASE + 0x100, DATA_BASE + 0x800
    hi = (rnd.randrange(1, 0x10000) << 16) if a16 else 0       # ignored by 16-bit addressing
    regs = {"esi": si | hi, "edi": di | hi, "ecx": count | (hi if a16 else 0),
            "eax": rnd.randrange(1 << 32) & ~0xFCFCFCFC, "ebx": 0x1234,
            "eflags": 2 | (DF if df else 0) | rnd.choice([0, 1, 0x40, 0x8D5])}
    return Snippet(mode=mode, code=code, regs=regs, data=bytes(data),
                   label=f"{op}{size} rep={rep} df={df} a16={a16} mode={mode}")


@pytest.mark.diff
@pytest.mark.parametrize("mode,op,size,rep,df,a16", list(_cases()))
def test_string_ops_match_unicorn(mode, op, size, rep, df, a16):
    for seed in range(3):
        sn = _snippet(mode, op, size, rep, df, a16, seed)
        ref = run_unicorn(sn)
        ours = run_tvmm(sn)
        assert ours.exception == ref.exception, sn.label
        for r in GPRS + ("eip",):
            assert ours.regs[r] == ref.regs[r], f"{sn.label}: {r} {ours.regs[r]:#x} != {ref.regs[r]:#x}"
        mask = 0x8D5 | DF
        assert ours.regs["eflags"] & mask == ref.regs["eflags"] & mask, sn.label
        assert ours.data == ref.data, sn.label


@pytest.mark.diff
@pytest.mark.parametrize("mode", [32, 16])
def test_xlat_matches_unicorn(mode):
    rnd = random.Random(mode)
    data = bytes(rnd.randrange(256) for _ in range(PAGE))
    for al in (0, 0x7F, 0x80, 0xFF):
        sn = Snippet(mode=mode, code=b"\xd7", regs={"ebx": DATA_BASE + 0x300, "eax": 0xAABBCC00 | al},
                     data=data, label=f"xlat al={al:#x}")
        ref, ours = run_unicorn(sn), run_tvmm(sn)
        assert ours.exception == ref.exception is None, sn.label
        for r in GPRS + ("eip",):
            assert ours.regs[r] == ref.regs[r], sn.label


# ------------------------------------------- bulk paths against a plain model
from hypothesis import HealthCheck, given, settings, strategies as st   # noqa: E402

_OPC = {"movs": 0xA4, "cmps": 0xA6, "stos": 0xAA, "lods": 0xAC, "scas": 0xAE}
_ARENA = 0x10000          # test memory window [0x10000, 0x18000)


def _model(mem: bytearray, op, s, rep, back, esi, edi, ecx, eax):
    """Element-by-element reference for a flat 32-bit REP string instruction
    (offsets relative to ``mem``).  Returns (esi, edi, ecx, eax, last compare)."""
    step = -s if back else s
    last = None
    while ecx:
        if op == "movs":
            mem[edi:edi + s] = mem[esi:esi + s]
        elif op == "stos":
            mem[edi:edi + s] = (eax & ((1 << 8 * s) - 1)).to_bytes(s, "little")
        elif op == "lods":
            eax = (eax & ~((1 << 8 * s) - 1)) | int.from_bytes(mem[esi:esi + s], "little")
        elif op == "cmps":
            last = (int.from_bytes(mem[esi:esi + s], "little"), int.from_bytes(mem[edi:edi + s], "little"))
        else:
            last = (eax & ((1 << 8 * s) - 1), int.from_bytes(mem[edi:edi + s], "little"))
        if op in ("movs", "cmps", "lods"):
            esi += step
        if op in ("movs", "cmps", "stos", "scas"):
            edi += step
        ecx -= 1
        if last is not None and rep and (last[0] == last[1]) != (rep == 0xF3):
            break
    return esi, edi, ecx, eax, last


def _arena_bytes(seed: int, _cache: dict = {}) -> bytes:
    """Initial arena contents: a small alphabet, so compares see long equal runs."""
    if seed not in _cache:
        rnd = random.Random(seed)
        _cache[seed] = bytes(rnd.randrange(3) for _ in range(0x8000))
    return _cache[seed]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(sorted(_OPC)), s=st.sampled_from([1, 2, 4]), rep=st.sampled_from([0xF3, 0xF2]),
       back=st.booleans(), esi=st.integers(0x2000, 0x5000), dist=st.integers(-40, 40),
       far=st.booleans(), ecx=st.integers(0, 3000), seed=st.integers(0, 3),
       chunks=st.lists(st.integers(1, 2000), max_size=3))
def test_rep_bulk_paths_match_an_element_by_element_model(op, s, rep, back, esi, dist, far, ecx, seed,
                                                          chunks):
    rnd = random.Random(seed)
    mem = bytearray(_arena_bytes(seed))
    edi = esi + (0x1234 if far else dist)
    if back:
        esi, edi = esi + 0x1000, edi + 0x1000
    else:
        esi, edi = esi - 0x1000, edi - 0x1000
    ecx = min(ecx, (min(esi, edi) // s) - 1 if back else (0x8000 - max(esi, edi)) // s - 1)
    eax = rnd.randrange(1 << 32) & 0x01010101 if seed else 0x02010200
    m = _shared_box()
    m.write(_ARENA, bytes(mem))
    code = (b"\x66" if s == 2 else b"") + bytes([rep, _OPC[op] + (s > 1)])
    end = m.load32(code, esi=_ARENA + esi, edi=_ARENA + edi, ecx=ecx, eax=eax,
                   eflags=2 | (DF if back else 0))
    for c in chunks:
        m.cpu.run(c)
    cpu = m.finish(end)
    r_esi, r_edi, r_ecx, r_eax, last = _model(mem, op, s, rep, back, esi, edi, ecx, eax)
    assert m.read(_ARENA, 0x8000) == bytes(mem)
    assert (cpu.regs[ESI], cpu.regs[EDI], cpu.regs[ECX], cpu.regs[EAX]) == \
        (_ARENA + r_esi, _ARENA + r_edi, r_ecx, r_eax)
    assert cpu.icount == max(ecx - r_ecx, 1)     # ECX = 0: the instruction still retires
    if last is not None:
        f = cpu.get_eflags()
        assert bool(f & ZF) == (last[0] == last[1]) and bool(f & 1) == (last[0] < last[1])
