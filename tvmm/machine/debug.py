"""Debug registers DR0-DR7 (SDM vol. 3, 17.2) and debugger watchpoints.

Invariants:
- Linear pages that hold an enabled data breakpoint or a debugger watchpoint
  are listed in ``cpu.watch_vpns`` and never enter the TLB, so every access
  to them takes the slow path, which calls ``check_data_access``.
- A data breakpoint is a trap: the access completes, the running block is cut
  after the current instruction, and #DB is delivered before the next one.
- Debugger watchpoints lie inside the 32-bit linear address space, and
  together keep at most ``MAX_WATCH_PAGES`` pages out of the TLB
  (``watch_problem`` says why one cannot be set): every access to a watched
  page takes the slow path, and the page set itself costs memory.
"""

from __future__ import annotations

from .consts import DB, M32, RF
from .errors import CpuFault, Stop, StopKind

LEN = {0: 1, 1: 2, 2: 8, 3: 4}
MAX_WATCHPOINTS = 256
MAX_WATCH_PAGES = 4096           # 16 MiB watched in all: larger regions are refused, not slowed to a crawl
_PAGES = 1 << 20                 # linear pages in 4 GiB


def _enabled(dr7: int, i: int) -> bool:
    return bool(dr7 & (3 << (2 * i)))


def exec_breakpoints(cpu):
    dr7 = cpu.dr[7]
    return [cpu.dr[i] for i in range(4) if _enabled(dr7, i) and (dr7 >> (16 + 4 * i)) & 3 == 0]


def check_exec_breakpoint(cpu, lin: int) -> None:
    """Instruction breakpoints are faults taken before the instruction runs."""
    dr7 = cpu.dr[7]
    if not dr7 & 0xFF:
        return
    if cpu.eflags & RF:
        cpu.eflags &= ~RF
        return
    hits = 0
    for i in range(4):
        if _enabled(dr7, i) and (dr7 >> (16 + 4 * i)) & 3 == 0 and cpu.dr[i] == lin:
            hits |= 1 << i
    if hits:
        cpu.dr[6] = (cpu.dr[6] & ~0xF) | hits
        raise CpuFault(DB)


def check_data_access(cpu, lin: int, size: int, write: bool) -> None:
    dr7 = cpu.dr[7]
    hits = 0
    for i in range(4):
        if not _enabled(dr7, i):
            continue
        rw = (dr7 >> (16 + 4 * i)) & 3
        if rw == 0 or rw == 2 or (rw == 1 and not write):
            continue
        ln = LEN[(dr7 >> (18 + 4 * i)) & 3]
        base = cpu.dr[i] & ~(ln - 1)
        if lin < base + ln and base < lin + size:
            hits |= 1 << i
    if hits:
        cpu.pending_db |= hits
        cpu.attention = True
        cpu.end_block()
    for (wlin, wlen, kind) in cpu.watchpoints:
        if lin < wlin + wlen and wlin < lin + size:
            if kind == "a" or (kind == "w" and write) or (kind == "r" and not write):
                cpu.request_stop(Stop(StopKind.WATCHPOINT, f"watchpoint at {wlin:#x}",
                                      {"lin": wlin, "kind": kind, "access": lin, "write": write}))
                cpu.end_block()


def _watch_vpns(lin: int, length: int) -> range:
    return range(lin >> 12, min(_PAGES, ((lin + max(length, 1) - 1) >> 12) + 1))


def watch_problem(cpu, lin: int, length: int) -> str | None:
    """Why a debugger watchpoint over ``[lin, lin + length)`` cannot be
    honoured (None: it can)."""
    if not 0 <= lin <= M32:
        return f"address {lin:#x} is beyond the 32-bit linear address space"
    if length < 1:
        return "a watchpoint must cover at least one byte"
    if lin + length > M32 + 1:
        return f"{length:#x} bytes from {lin:#x} run past the end of the linear address space"
    if len(cpu.watchpoints) >= MAX_WATCHPOINTS:
        return f"at most {MAX_WATCHPOINTS} watchpoints"
    pages = set(_watch_vpns(lin, length)) if length <= MAX_WATCH_PAGES << 12 else None
    if pages is not None:
        for (wlin, wlen, _k) in cpu.watchpoints:
            pages.update(_watch_vpns(wlin, wlen))
    if pages is None or len(pages) > MAX_WATCH_PAGES:
        return f"watchpoints may cover at most {MAX_WATCH_PAGES * 4096 >> 20} MiB in all"
    return None


def reads_watched(cpu) -> bool:
    """Whether a load can hit a watchpoint or an enabled read/write data
    breakpoint (RW = 11b): translated units then leave after every load
    whose slow path set ``block_abort`` (``translate.abort_check``)."""
    dr7 = cpu.dr[7]
    if any(_enabled(dr7, i) and (dr7 >> (16 + 4 * i)) & 3 == 3 for i in range(4)):
        return True
    return any(kind != "w" for (_lin, _len, kind) in cpu.watchpoints)


def update_watch_pages(cpu) -> None:
    """Recompute the pages kept out of the TLB; call after DR7/DRn or watchpoint changes.
    Translated units compiled while no load could hit one are dropped when one can."""
    rw = reads_watched(cpu)
    if rw != cpu.read_watch:
        cpu.read_watch = rw
        if rw:
            cpu.drop_translations()
    vpns = set()
    dr7 = cpu.dr[7]
    for i in range(4):
        if _enabled(dr7, i) and (dr7 >> (16 + 4 * i)) & 3 in (1, 3):
            a = cpu.dr[i]
            vpns.add(a >> 12)
            vpns.add((a + 7) >> 12)
    for (wlin, wlen, _k) in cpu.watchpoints:
        vpns.update(_watch_vpns(wlin, wlen))
    if vpns != cpu.watch_vpns:
        cpu.watch_vpns = vpns
        cpu.flush_tlb(keep_global=False)
    cpu._refresh()
