"""The disassembly pane: capstone around EIP, with kernel symbols and
breakpoints marked.  It follows EIP; the cursor (up/down) picks the line
that breakpoint toggling and run-to apply to.

Every line is a real instruction boundary: code is never decoded from a
guessed address.  The lines above EIP are decoded forward from a known
start — the enclosing symbol, or an instruction the processor itself
decoded (``GuestView.code_starts``; not before the enclosing symbol) — and
only when that decoding lands exactly on EIP and on every other known start
it passes; otherwise the pane starts at EIP.  The decoder's size follows
CS.D (16-bit code segments, real mode included, are shown as 16-bit code)."""

from __future__ import annotations

import capstone
from rich.text import Text
from textual.widgets import Static


class DisasmPane(Static, can_focus=True):
    BINDINGS = [("up", "cursor(-1)", "Up"), ("down", "cursor(1)", "Down")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self._md32 = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
        self._md16 = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
        self.lines: list[tuple[int, str]] = []
        self.cursor = 0
        self.symbols = None
        self._note = ""                  # said instead of code: a vCPU not started yet

    @property
    def cursor_addr(self) -> int | None:
        return self.lines[self.cursor][0] if 0 <= self.cursor < len(self.lines) else None

    def action_cursor(self, delta: int) -> None:
        self.cursor = max(0, min(len(self.lines) - 1, self.cursor + delta))
        self._draw()

    def show(self, view, symbols, follow: bool) -> None:
        self.symbols = symbols
        regs = view.regs
        eip = (regs.segs[1][2] + regs.eip) & 0xFFFFFFFF
        md = self._md32 if regs.code32 else self._md16        # CS.D, not the mode
        self.lines = decode_window(md, view.code, view.code_addr, eip,
                                   known_starts(view.code_starts, symbols, eip), symbols)
        self._eip = eip
        self._bps = view.breakpoints
        self._note = (f"cpu{view.vcpu} is waiting for its STARTUP IPI: it has run no code yet"
                      if view.smp and view.vcpu_state == "wait SIPI" else "")
        if follow:
            self.cursor = next((i for i, (a, _) in enumerate(self.lines) if a == eip), 0)
        self.cursor = min(self.cursor, max(0, len(self.lines) - 1))
        self._draw()

    def _draw(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        height = max(4, self.size.height or 12)
        first = max(0, self.cursor - height // 3)
        if self._note:
            t.append(self._note + "\n", style="dim")
        for i, (addr, text) in enumerate(self.lines[first:first + height], start=first):
            label = self.symbols.exact(addr) if self.symbols else None
            if label:
                t.append(f"<{label}>\n", style="bold cyan")
            mark = "●" if addr in self._bps else " "
            arrow = "▶" if addr == self._eip else " "
            style = "reverse" if i == self.cursor and self.has_focus else ("bold" if addr == self._eip else "")
            t.append(f"{mark}{arrow}{addr:08x}  {text}\n", style=style)
        self.update(t)

    def on_focus(self) -> None:
        self._draw() if self.lines else None

    def on_blur(self) -> None:
        self._draw() if self.lines else None


def known_starts(code_starts, symbols, eip: int) -> list[int]:
    """Addresses known to start an instruction: the processor's decoded
    instructions and EIP; within the symbol enclosing EIP when there is one
    (its start included), so decoding never crosses into another function."""
    starts = set(code_starts)
    name = symbols.name_at(eip) if symbols else None
    if name is not None:
        _, plus, offset = name.rpartition("+")
        try:
            first = eip - int(offset, 16) if plus else eip
        except ValueError:
            first = None
        if first is not None:
            starts = {a for a in starts if a >= first} | {first}
    starts.add(eip)
    return sorted(starts)


def decode_window(md, code: bytes, base: int, eip: int, starts, symbols=None) -> list[tuple[int, str]]:
    """The instructions of ``code`` (at linear ``base``): from the earliest
    known start whose forward decoding reaches EIP exactly and passes through
    every known start between (from EIP if none does), then on from EIP.
    Past EIP an instruction that would swallow a known start or a symbol is
    shown as bytes, and decoding resumes there."""
    end = base + len(code)
    if not base <= eip < end:
        return []
    sync = set(starts)

    def is_start(a: int) -> bool:
        return a in sync or bool(symbols and symbols.exact(a))

    def decode(start: int, stop: int, resync: bool):
        addr = start
        while addr < stop:
            insn = next(md.disasm(code[addr - base:], addr, 1), None)
            if insn is None:
                return
            size = insn.size
            cut = next((a for a in range(addr + 1, addr + size) if is_start(a)), None) if resync else None
            if cut is not None:
                yield addr, cut - addr, ".byte " + ", ".join(f"{b:#04x}" for b in code[addr - base:cut - base])
                addr = cut
                continue
            yield addr, size, f"{insn.mnemonic} {insn.op_str}".strip()
            addr += size

    after = [(a, t) for a, _, t in decode(eip, end, True)]
    known = [a for a in starts if base <= a < eip]
    for n, start in enumerate(known):
        before = list(decode(start, eip, False))
        addr, size, _ = before[-1] if before else (start, 0, "")
        if addr + size == eip and set(known[n:]) <= {a for a, _, _ in before}:
            return [(a, t) for a, _, t in before] + after
    return after
