"""The guests pane: one row per guest — state, instructions, speed — and,
under a guest with several processors, one indented row per vCPU (its
state and the instructions it retired itself; ``*`` marks the vCPU that ran
last, the one a stop is about).  A guest's row selects the guest through
its bootstrap processor, a vCPU's row that vCPU."""

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


def row_key(name: str, vcpu: int | None = None) -> str:
    """A row's key: the guest's name, or ``NAME cpuN`` for a vCPU's row
    (guest names have no spaces)."""
    return name if vcpu is None else f"{name} cpu{vcpu}"


def parse_key(key: str) -> tuple[str, int | None]:
    """(guest, vCPU index or None for the guest's own row)."""
    name, sep, cpu = key.rpartition(" cpu")
    if sep and cpu.isdigit():
        return name, int(cpu)
    return key, None


class GuestsPane(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_column("guest", width=10)
        self.add_column("state", width=12)          # "paused [gdb]"
        self.add_column("insns", width=5)
        self.add_column("MIPS", width=4)
        self._keys: list[str] = []

    def show(self, views: dict, speed: dict) -> None:
        rows = []
        for name, v in views.items():
            state = Text(v.state + (" [gdb]" if v.debugger_attached else ""))   # not markup
            rows.append((row_key(name), (name, state, _short(v.icount), f"{speed.get(name, 0.0):.1f}")))
            if v.smp:
                stopped = v.state != "running"
                for c in v.vcpus:
                    mark = "*" if stopped and c.ran_last else ""
                    rows.append((row_key(name, c.index),
                                 (f"  cpu{c.index}{mark}", Text(c.state), _short(c.icount), "")))
        keys = [k for k, _ in rows]
        if keys != self._keys:
            row_now = self.cursor_row
            keep = self._keys[row_now] if 0 <= row_now < len(self._keys) else None
            self._keys = keys
            self.clear()
            for key, row in rows:
                self.add_row(*row, key=key)
            self.move_cursor(row=keys.index(keep) if keep in keys else min(row_now, len(rows) - 1))
            return
        for i, (_key, row) in enumerate(rows):
            for j, cell in enumerate(row):
                self.update_cell_at((i, j), cell)

    def row_of(self, name: str, vcpu: int | None = None) -> int | None:
        """The row index of a guest's row (or of one of its vCPUs)."""
        key = row_key(name, vcpu)
        return self._keys.index(key) if key in self._keys else None
