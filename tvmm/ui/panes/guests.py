"""The guests pane: one row per guest — state, instructions, speed."""

from __future__ import annotations

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
        self.add_columns("guest", "state", "insns", "MIPS")

    def show(self, views: dict, speed: dict) -> None:
        rows = []
        for name, v in views.items():
            state = v.state + (" [gdb]" if v.debugger_attached else "")
            if v.state in ("crashed", "paused") and v.reason:
                state += f": {v.reason}"
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
