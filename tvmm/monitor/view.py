"""Frozen views of guests: what the UI draws, taken between slices.

The machine runs in one thread; the UI draws in another.  The UI never reads
live guest state: the thread that runs the machine calls ``guest_view`` after
each slice and publishes the result, an immutable ``GuestView``, which the
UI may keep as long as it likes.

A view holds what every pane needs: state, time, registers as the guest sees
them (and the real CR3), code bytes around EIP with the addresses in them
where the processor decoded an instruction (so the disassembly never starts
in the middle of one), the page rows for a window of
virtual addresses (guest walk beside shadow entry), a memory window, the
console's tail, the CGA screen and the guest's recent events with counters.

A guest with several processors is seen through one of them, the selected
vCPU (``guest_view(..., vcpu=i)``; the bootstrap processor by default): the
registers, code and page rows (that vCPU's page tables and shadow root) and
the memory window are that vCPU's, while ``vcpus`` sums up every vCPU
(state, EIP, instructions retired) for the guests pane.  ``event_vcpu``
narrows the events to one vCPU's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import guest as guest_mod
from . import inspect
from ..machine.cpu import CROSS_KEY_MASK

SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
CODE_BEFORE, CODE_AFTER = 128, 96
CONSOLE_TAIL = 16384


@dataclass(frozen=True)
class Registers:
    gprs: tuple[int, ...]
    eip: int
    eflags: int
    segs: tuple[tuple[str, int, int, int], ...]      # name, selector, base, limit
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    shadow_cr3: int
    gdtr: tuple[int, int]
    idtr: tuple[int, int]
    cpl: int
    protected: bool
    code32: bool = True                  # CS.D: the code segment's default size is 32 bits
    fpu: tuple = ()                      # x87: (FCW, FSW, full tag word, (ST0..ST7 as 80-bit ints))

    def named(self) -> dict[str, int]:
        d = dict(zip(GPR_NAMES, self.gprs))
        d.update(eip=self.eip, eflags=self.eflags, cr0=self.cr0, cr2=self.cr2, cr3=self.cr3, cr4=self.cr4,
                 shadow_cr3=self.shadow_cr3)
        for name, sel, _b, _l in self.segs:
            d[name] = sel
        return d


@dataclass(frozen=True)
class VcpuRow:
    """One of a guest's processors, summed up."""
    index: int
    state: str                           # running, paused, halted, wait SIPI, crashed, stopped
    eip: int
    icount: int                          # instructions it retired itself
    ran_last: bool = False               # the processor that executed last (hit the breakpoint, ...)


@dataclass(frozen=True)
class GuestView:
    name: str
    state: str
    reason: str
    icount: int
    now: int
    regs: Registers
    code_addr: int                       # linear address of code[0]
    code: bytes                          # may be short or empty when unmapped
    pages: tuple[inspect.PageRow, ...]
    mem_addr: int
    mem: bytes | None
    console: bytes
    screen: tuple[str, ...]
    events: tuple = ()
    counts: dict = field(default_factory=dict)
    breakpoints: frozenset = frozenset()
    debugger_attached: bool = False
    kernel: str | None = None
    code_starts: tuple[int, ...] = ()    # linear addresses in the code window known to start an instruction
    history: str = ""                    # how far back the guest can go ("": no history kept)
    vcpu: int = 0                        # the vCPU whose registers, code, pages and memory these are
    vcpus: tuple[VcpuRow, ...] = ()      # every vCPU, in index order
    event_vcpu: int | None = None        # events: only this vCPU's (None: every vCPU's)

    @property
    def smp(self) -> bool:
        """The guest has several processors (the UI then names them)."""
        return len(self.vcpus) > 1

    @property
    def vcpu_state(self) -> str:
        """The selected vCPU's state (the guest's when it has one processor)."""
        return self.vcpus[self.vcpu].state if self.smp else self.state


def vcpu_state(guest, cpu) -> str:
    """A processor's state as the UI shows it: crashed, waiting for its
    STARTUP IPI, halted, or else the guest's (running, paused; ``stopped``
    once the guest ended)."""
    own = guest_mod.vcpu_state(cpu)
    if own == "waiting for SIPI":
        return "wait SIPI"
    if own != "running":
        return own
    return guest.state if guest.state in ("running", "paused") else "stopped"


def vcpu_rows(guest) -> tuple[VcpuRow, ...]:
    last = guest.pc.running
    return tuple(VcpuRow(c.index, vcpu_state(guest, c), c.eip, c.icount, c is last) for c in guest.vcpus)


def registers(guest, cpu=None) -> Registers:
    c = cpu or guest.vcpu
    segs = tuple((SEG_NAMES[i], c.seg_sel[i], c.seg_base[i], c.seg_limit[i]) for i in range(6))
    return Registers(tuple(c.regs), c.eip, c.get_eflags(), segs, c.guest_cr(0), c.cr2, c.guest_cr(3),
                     c.guest_cr(4), c.cr3, (c.gdtr_base, c.gdtr_limit), (c.idtr_base, c.idtr_limit), c.cpl,
                     c.protected, bool(c.code32),
                     (c.fpu.cw, c.fpu.status(), c.fpu.tag_word(), tuple(c.fpu.st(i) for i in range(8))))


def decoded_starts(guest, addr: int, n: int, cpu=None) -> tuple[int, ...]:
    """The linear addresses in ``addr .. addr + n`` at which the processor has
    decoded an instruction, at the current code size: every instruction of
    every cached block on those pages whose bytes the current mapping puts
    there (blocks are keyed by physical address, so an address is taken only
    when it translates to the block's own physical bytes).  Sorted.
    ``cpu``: the vCPU whose decoded blocks and page tables (default the
    bootstrap processor)."""
    cpu = cpu or guest.vcpu
    blocks, page_blocks, code32 = cpu.blocks, cpu._page_blocks, int(cpu.code32)
    mask = 0xFFFFFFFF if code32 else 0xFFFF
    end = addr + n
    out: set[int] = set()
    page = addr & ~0xFFF
    while page < end:
        gpa = inspect.translate(guest, page, cpu=cpu)
        host = None
        if gpa is not None:
            host = guest.gmem.hpa_page(gpa >> 12)
            if host is None:
                host = guest.gmem.rom_hpa_page(gpa >> 12)
        for key in page_blocks.get(host >> 12, ()) if host is not None else ():
            block = blocks.get(key)
            if block is None or key & 1 != code32 or not block.insns:
                continue
            first_pa, first_eip = (key & CROSS_KEY_MASK) >> 33, block.insns[0].eip
            for d in block.insns:
                pa = first_pa + ((d.eip - first_eip) & mask)
                if pa >> 12 == host >> 12:
                    lin = page + (pa & 0xFFF)
                    if addr <= lin < end:
                        out.add(lin)
        page += 0x1000
    return tuple(sorted(out))


def _read(guest, addr: int, n: int, physical: bool = False, cpu=None) -> bytes:
    """Whatever is readable from ``addr`` on (stops at the first unmapped page)."""
    out = b""
    while n > 0:
        chunk = min(n, 0x1000 - (addr & 0xFFF))
        try:
            out += inspect.read(guest, addr, chunk, physical, cpu=cpu)
        except inspect.AccessError:
            break
        addr += chunk
        n -= chunk
    return out


def guest_view(guest, *, vcpu: int = 0, page_va: int | None = None, pages: int = 16, mem_addr: int = 0,
               mem_physical: bool = False, events: int = 200, event_vcpu: int | None = None) -> GuestView:
    """The guest seen through vCPU ``vcpu`` (clamped to the guest's
    processors); ``event_vcpu``: only that vCPU's events."""
    cpus = guest.vcpus
    vcpu = max(0, min(vcpu, len(cpus) - 1))
    cpu = cpus[vcpu]
    if event_vcpu is not None and not 0 <= event_vcpu < len(cpus):
        event_vcpu = None
    regs = registers(guest, cpu)
    lin_eip = (cpu.seg_base[1] + regs.eip) & 0xFFFFFFFF
    code_addr = max(0, lin_eip - CODE_BEFORE)
    code = _read(guest, code_addr, CODE_BEFORE + CODE_AFTER, cpu=cpu)
    if len(code) < CODE_BEFORE:                  # the page before EIP is unmapped: start at EIP
        code_addr, code = lin_eip, _read(guest, lin_eip, CODE_AFTER, cpu=cpu)
    base = (lin_eip if page_va is None else page_va) & 0xFFFFF000
    start = max(0, base - (pages // 2) * 0x1000)
    rows = tuple(inspect.walk(guest, start + i * 0x1000, cpu=cpu) for i in range(pages))
    mem = _read(guest, mem_addr, 256, mem_physical, cpu=cpu) or None
    log = guest.log
    return GuestView(
        name=guest.name, state=guest.state, reason=guest.reason, icount=guest.icount, now=guest.now(),
        regs=regs, code_addr=code_addr, code=code, pages=rows, mem_addr=mem_addr, mem=mem,
        console=bytes(guest.console[-CONSOLE_TAIL:]), screen=tuple(guest.pc.cga.text()),
        events=tuple(log.recent(guest.name, limit=events, vcpu=event_vcpu)), counts=log.by_kind(guest.name),
        breakpoints=frozenset(guest.vcpu.breakpoints), debugger_attached=guest.debugger_attached,
        kernel=guest.spec.kernel, code_starts=decoded_starts(guest, code_addr, len(code), cpu),
        history=guest.timeline.summary() if guest.timeline is not None else "",
        vcpu=vcpu, vcpus=vcpu_rows(guest), event_vcpu=event_vcpu)
