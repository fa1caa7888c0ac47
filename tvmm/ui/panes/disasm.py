"""The disassembly pane: capstone around EIP, with kernel symbols and
breakpoints marked.  It follows EIP; the cursor (up/down) picks the line
that breakpoint toggling and run-to apply to."""

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

    @property
    def cursor_addr(self) -> int | None:
        return self.lines[self.cursor][0] if 0 <= self.cursor < len(self.lines) else None

    def action_cursor(self, delta: int) -> None:
        self.cursor = max(0, min(len(self.lines) - 1, self.cursor + delta))
        self._draw()

    def show(self, view, symbols, follow: bool) -> None:
        self.symbols = symbols
        eip = (view.regs.segs[1][2] + view.regs.eip) & 0xFFFFFFFF
        md = self._md32 if view.regs.protected and view.regs.segs[1][3] > 0xFFFF else self._md32
        if not view.regs.protected:
            md = self._md16
        insns = self._decode(md, view.code, view.code_addr, eip)
        self.lines = [(a, text) for a, text in insns]
        self._eip = eip
        self._bps = view.breakpoints
        if follow:
            self.cursor = next((i for i, (a, _) in enumerate(self.lines) if a == eip), 0)
        self.cursor = min(self.cursor, max(0, len(self.lines) - 1))
        self._draw()

    def _decode(self, md, code: bytes, base: int, eip: int) -> list[tuple[int, str]]:
        # decode from the start of the window, resynchronising on EIP
        out = []
        for start in (base, eip):
            out = []
            off = start - base
            for i in md.disasm(code[off:], start):
                out.append((i.address, f"{i.mnemonic} {i.op_str}".strip()))
            if any(a == eip for a, _ in out) or start == eip:
                break
        return out

    def _draw(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        height = max(4, self.size.height or 12)
        first = max(0, self.cursor - height // 3)
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
