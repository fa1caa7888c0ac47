"""Memory: hex and ASCII at a virtual (or physical) address of the selected guest."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class MemoryPane(Static):
    def show(self, view) -> None:
        if view.mem is None:
            self.update(f"{view.mem_addr:08x}: not mapped")
            return
        rows = []
        for off in range(0, len(view.mem), 16):
            chunk = view.mem[off:off + 16]
            hexes = " ".join(f"{b:02x}" for b in chunk)
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            rows.append(f"{view.mem_addr + off:08x}  {hexes:<47}  {text}")
        self.update(Text("\n".join(rows)))                          # "[" in the ASCII column is not markup
