"""The registers pane: the guest's state and why (crashed with the reason,
paused by whom), general registers, EIP, EFLAGS by flag, segments with
their cached bases and limits, CR0/CR2/CR3/CR4 as the guest sees them and
the shadow CR3 the monitor really uses, and how far back the guest's
history goes.  Values that changed since the previous stop are
highlighted.  A guest with several processors is shown through the
selected vCPU, which the title names (``xv6 cpu1: halted``); what changed
is kept apart for each guest and vCPU."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

FLAGS = [(0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"), (11, "OF")]



def _mode(regs) -> str:
    """real, prot, or v86 (EFLAGS.VM: virtual-8086 mode inside protected mode)."""
    if regs.eflags & 0x20000:
        return "v86"
    return "prot" if regs.protected else "real"

class RegistersPane(Static):
    def __init__(self, **kw):
        super().__init__(**kw)
        self._previous: dict | None = None
        self._shown: dict | None = None
        self._seen: dict[tuple[str, int], tuple[dict | None, dict | None]] = {}   # (guest, vCPU) -> the two
        self._key: tuple[str, int] | None = None
        self.changed: set[str] = set()           # highlighted: changed since the previous stop

    def show(self, view, stopped: bool) -> None:
        regs = view.regs
        now = regs.named()
        key = (view.name, view.vcpu)
        if key != self._key:                     # another guest or vCPU: its own previous stop
            if self._key is not None:
                self._seen[self._key] = (self._previous, self._shown)
            self._previous, self._shown = self._seen.get(key, (None, None))
            self._key = key
        if stopped and self._shown is not None and self._shown != now:
            self._previous = self._shown
        self._shown = now
        changed = self.changed = {k for k, v in now.items()
                                  if self._previous is not None and self._previous.get(k) != v}
        lines: list[Text] = []

        def line(*parts) -> None:
            t = Text(no_wrap=True, overflow="ellipsis")
            for part in parts:
                if isinstance(part, tuple):          # (register name, width)
                    name, width = part
                    t.append(f"{now[name]:0{width}x}", style="bold yellow" if name in changed else "")
                else:
                    t.append(part)
            lines.append(t)

        if not view.smp:
            status = f"{view.name}: {view.state}" + (f" — {view.reason}" if view.reason else "")
        elif view.vcpu_state == view.state:     # the guest's reason is this vCPU's too
            status = f"{view.name} cpu{view.vcpu}: {view.state}" + (f" — {view.reason}" if view.reason else "")
        else:
            status = f"{view.name} cpu{view.vcpu}: {view.vcpu_state} · guest {view.state}"
        lines.append(Text(status, style="bold", no_wrap=True, overflow="ellipsis"))
        for a, b in (("eax", "ebx"), ("ecx", "edx"), ("esi", "edi"), ("ebp", "esp")):
            line(f"{a} ", (a, 8), f"  {b} ", (b, 8))
        line("eip ", ("eip", 8), f"  cpl {regs.cpl} {_mode(regs)}")
        line("efl ", ("eflags", 8), " " + " ".join(n for bit, n in FLAGS if regs.eflags >> bit & 1))
        line("cr0 ", ("cr0", 8), "  cr2 ", ("cr2", 8))
        line("cr3 ", ("cr3", 8), "  cr4 ", ("cr4", 8))
        line("shadow cr3 ", ("shadow_cr3", 8), "  (real)")
        if view.history:
            lines.append(Text(view.history, style="dim", no_wrap=True, overflow="ellipsis"))
        line(*[x for n in ("cs", "ss", "ds") for x in (f"{n} ", (n, 4), " ")])
        line(*[x for n in ("es", "fs", "gs") for x in (f"{n} ", (n, 4), " ")])
        for name, sel, base, limit in regs.segs:   # cached bases and limits, as room allows
            line(f"{name}.base {base:08x} limit {limit:08x}")
        room = self.size.height or len(lines)
        out = Text("\n").join(lines[:room])
        self.update(out)
