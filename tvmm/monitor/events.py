"""The monitor's event queue: what it did for each guest, and counters.

Every exit, hidden or reflected page fault, injected interrupt, NMI and
event dispatched to a guest's IDT is recorded as an ``Event`` stamped with the
guest, the guest's time (its instruction count) and the vCPU it concerns.  The log keeps the newest
``capacity`` events (the UI and the gdb stub show the recent past) and
counts every event ever recorded by kind, so counters stay exact however
long a session runs.

Invariants: recording never changes what a guest does; an event's ``icount``
is the guest-visible time of the instruction that caused it (for a REP
instruction, of the start of its current run: each iteration counts as one).
"""

from __future__ import annotations

from collections import Counter, deque

# Event kinds, grouped as the monitor's three duties.
# virtualize the computer
EXIT_IO = "io"                    # IN/OUT/INS/OUTS to a virtual device port
EXIT_MMIO = "mmio"                # access to a virtual device's memory
EXIT_CR_READ = "cr-read"
EXIT_CR_WRITE = "cr-write"        # includes CR3 switches
EXIT_INVLPG = "invlpg"
EXIT_HLT = "hlt"
EXIT_CPUID = "cpuid"
EXIT_MSR = "msr"
EXIT_TASK_SWITCH = "task-switch"  # a hardware task switch (JMP/CALL/IRET/task gate); its CR3 load is a cr-write
PF_HIDDEN = "pf-hidden"           # a shadow miss the monitor filled; the guest never knew
PF_REFLECTED = "pf-reflected"     # a fault the guest's own tables cause: delivered to it
PT_WRITE = "pt-write"             # a store to a guest page table a shadow mirrors (write-protected)
SHADOW_FLUSH = "shadow-flush"     # every shadow root dropped (paging mode change, A20, reset)
# dispatch events
IRQ_INJECT = "irq-inject"         # an external interrupt delivered through the guest's IDT
IRQ_WINDOW = "irq-window"         # an interrupt waited for the guest to enable interrupts
GUEST_EXCEPTION = "exception"     # an exception the guest's handlers take
GUEST_SOFTINT = "softint"         # INT n (system calls)
NMI_EVENT = "nmi"                 # a non-maskable interrupt: delivered, or held while NMIs are blocked
# allocate resources / lifecycle
GUEST_STOP = "stop"               # halted for good, crashed, reset
DEBUGGER = "debugger"             # a debugger wrote registers or memory

EXIT_KINDS = (EXIT_IO, EXIT_MMIO, EXIT_CR_READ, EXIT_CR_WRITE, EXIT_INVLPG, EXIT_HLT, EXIT_CPUID, EXIT_MSR,
              PF_HIDDEN, PF_REFLECTED, PT_WRITE, EXIT_TASK_SWITCH)


class Event:
    """One event; immutable once recorded.

    ``detail`` may be given as text or, on hot paths (a hidden page fault
    is recorded tens of thousands of times a second and almost never
    read), as ``(format, *args)``: ``format(*args)`` is called, once, when
    the text is first read.  The arguments must be values taken when the
    event happened, never live state."""

    __slots__ = ("seq", "guest", "icount", "kind", "_detail", "vcpu")

    def __init__(self, seq: int, guest: str, icount: int, kind: str, detail, vcpu: int = 0):
        self.seq = seq            # global order across guests
        self.guest = guest
        self.icount = icount      # the guest's instruction count when it happened
        self.kind = kind
        self._detail = detail
        self.vcpu = vcpu          # which of the guest's processors

    @property
    def detail(self) -> str:
        d = self._detail
        if type(d) is not str:
            d = self._detail = d[0](*d[1:])
        return d

    def _key(self) -> tuple:
        return self.seq, self.guest, self.icount, self.kind, self.detail, self.vcpu

    def __eq__(self, other) -> bool:
        return type(other) is Event and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Event(seq={self.seq!r}, guest={self.guest!r}, icount={self.icount!r}, kind={self.kind!r}, "
                f"detail={self.detail!r}, vcpu={self.vcpu!r})")

    def __str__(self) -> str:
        return f"#{self.seq} {self.guest} @{self.icount} {self.kind}: {self.detail}"


class EventLog:
    def __init__(self, capacity: int = 4096):
        self.events: deque[Event] = deque(maxlen=capacity)
        self.counts: Counter = Counter()             # (guest, kind) -> n
        self.seq = 0

    def record(self, guest: str, icount: int, kind: str, detail="", vcpu: int = 0) -> None:
        """``detail``: text, or ``(format, *args)`` formatted when read (see ``Event``)."""
        self.seq += 1
        self.counts[guest, kind] += 1
        self.events.append(Event(self.seq, guest, icount, kind, detail, vcpu))

    def count(self, guest: str | None = None, kind: str | None = None) -> int:
        return sum(n for (g, k), n in self.counts.items()
                   if (guest is None or g == guest) and (kind is None or k == kind))

    def recent(self, guest: str | None = None, kinds=None, limit: int = 100,
               vcpu: int | None = None) -> list[Event]:
        """Newest first (``vcpu``: only that processor's)."""
        out = []
        for e in reversed(self.events):
            if (guest is None or e.guest == guest) and (kinds is None or e.kind in kinds) \
                    and (vcpu is None or e.vcpu == vcpu):
                out.append(e)
                if len(out) >= limit:
                    break
        return out

    def by_kind(self, guest: str | None = None) -> dict[str, int]:
        out: Counter = Counter()
        for (g, k), n in self.counts.items():
            if guest is None or g == guest:
                out[k] += n
        return dict(out)
