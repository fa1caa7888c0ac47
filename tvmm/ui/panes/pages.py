"""Page tables, guest beside shadow: for a window of virtual pages, the
guest's directory and table entries with their flags, the guest-physical
page, and the monitor's shadow entry with the host frame.  Marked: entries
not yet filled, write-protected for dirty tracking, device memory."""

from __future__ import annotations

from textual.widgets import DataTable

from ...monitor.inspect import flags


class PagesPane(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("gva", "guest PDE", "guest PTE", "gpa", "shadow", "hpa", "note")

    def show(self, view) -> None:
        self.clear()
        for r in view.pages:
            if r.gpa is None:
                note = "not mapped by the guest"
            elif r.device:
                note = "device (aperture)"
            elif not r.shadow & 1:
                note = "not filled"
            elif r.write_protected:
                note = "write-protected (dirty tracking)"
            else:
                note = ""
            self.add_row(f"{r.gva:08x}",
                         "-" if r.pde is None else f"{r.pde >> 12:05x} {flags(r.pde)}",
                         "-" if r.pte is None else f"{r.pte >> 12:05x} {flags(r.pte)}",
                         "-" if r.gpa is None else f"{r.gpa:08x}",
                         flags(r.shadow) if r.shadow & 1 else "-",
                         "-" if r.hpa is None else f"{r.hpa:08x}", note)
