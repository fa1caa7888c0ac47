"""The breakpoints of the selected guest, with their symbols; `delete`
removes the highlighted one."""

from __future__ import annotations

from textual.widgets import DataTable


class BreaksPane(DataTable):
    BINDINGS = [("delete", "remove", "Remove"), ("backspace", "remove", "Remove")]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("address", "symbol")
        self._shown: tuple = ()

    def show(self, view, symbols) -> None:
        addrs = tuple(sorted(view.breakpoints))
        if addrs == self._shown:
            return
        self._shown = addrs
        self.clear()
        for a in addrs:
            name = symbols.name_at(a) if symbols else None
            self.add_row(f"{a:08x}", name or "", key=str(a))
        if not addrs:
            self.add_row("(none: b in the disassembly adds one)", "")

    def action_remove(self) -> None:
        if not self._shown or self.cursor_row >= len(self._shown):
            return
        self.app.engine.toggle_breakpoint(self.app.selected, self._shown[self.cursor_row])
