"""The guests pane: one row per guest — state, instructions, speed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable


def _short(n: int) -> str:
    """Instruction counts in 5 characters: 4571, 932K, 10.4M, 1.20G."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n // 1000}K"
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e9:.2f}G"


class GuestsPane(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_column("guest", width=10)
        self.add_column("state", width=12)          # "paused [gdb]"
        self.add_column("insns", width=5)
        self.add_column("MIPS", width=4)

    def show(self, views: dict, speed: dict) -> None:
        rows = []
        for name, v in views.items():
            state = Text(v.state + (" [gdb]" if v.debugger_attached else ""))   # not markup
            rows.append((name, state, _short(v.icount), f"{speed.get(name, 0.0):.1f}"))
        if self.row_count != len(rows):
            keep = self.cursor_row
            self.clear()
            for row in rows:
                self.add_row(*row, key=row[0])
            self.move_cursor(row=min(keep, len(rows) - 1))
            return
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                self.update_cell_at((i, j), cell)
