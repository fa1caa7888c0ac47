"""Page tables, guest beside shadow: for a window of virtual pages, the
guest's directory and table entries with their flags, the guest-physical
page, and the monitor's shadow entry with the host frame.  Marked: entries
not yet filled, write-protected for dirty tracking, device memory.

At narrow widths (an 80-column terminal gives the pane 39 columns) the rows
are compact so that the guest's entry and the shadow entry stay side by
side: the page, the guest's entry that maps it (frame and P W U A D flags),
the shadow entry (host frame and flags) and a short mark (``wp``
write-protected for dirty tracking, ``dev`` device memory); "-" is an entry
the guest does not map, or a shadow entry not filled yet."""

from __future__ import annotations

from textual.widgets import DataTable

from ...monitor.inspect import compact_flags, flags

WIDE = 72          # columns the full layout needs (its note may be cut)


class PagesPane(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self._layout: str | None = None
        self._view = None
        self._window: int | None = None
        self._stale = True                         # the rows must be rebuilt (new columns)
        self._set_layout()

    def on_resize(self, _event) -> None:
        if self._set_layout() and self._view is not None:
            self._window = None                    # rebuilt: find the page of interest again
            self.show(self._view)
        elif self._view is not None and self.row_count:
            # shown (a tab switch) or resized: rows placed while the pane had
            # no height were centred in nothing, so centre the cursor again
            self.call_after_refresh(self._center, self.cursor_row)

    def _set_layout(self) -> bool:
        """Pick the layout for the current width; True when it changed."""
        layout = "wide" if self.size.width >= WIDE else "narrow"
        if layout == self._layout:
            return False
        self._layout = layout
        self._stale = True
        self.clear(columns=True)
        if layout == "wide":
            self.cell_padding = 1
            self.add_columns("gva", "guest PDE", "guest PTE", "gpa", "shadow", "hpa", "note")
        else:
            self.cell_padding = 0                # gaps are in the cells: every column counts
            self.add_columns(" gva", " guest", " shadow", " note")
        return True

    def _center(self, row: int) -> None:
        visible = max(1, self.scrollable_content_region.height - self.header_height)
        self.scroll_to(y=max(0, row - visible // 2), animate=False)

    @property
    def layout_name(self) -> str | None:
        return self._layout

    def show(self, view) -> None:
        """The view's pages, updated in place (the cursor and scroll position
        stay); a new window of pages puts its page of interest (EIP's, or the
        one jumped to) under the cursor, in the middle."""
        window = view.pages[0].gva if view.pages else None
        moved = window != self._window
        self._window = window
        self._view = view
        make = _wide_row if self._layout == "wide" else _narrow_row
        rows = [make(r) for r in view.pages]
        if self.row_count != len(rows) or self._stale:
            self._stale = False
            self.clear()
            for row in rows:
                self.add_row(*row)
        else:
            for i, row in enumerate(rows):
                for j, cell in enumerate(row):
                    if self.get_cell_at((i, j)) != cell:
                        self.update_cell_at((i, j), cell)
        if rows and moved:
            middle = len(rows) // 2
            self.move_cursor(row=middle, scroll=False)
            self.call_after_refresh(self._center, middle)      # once the rows are laid out


def _note(r) -> str:
    if r.gpa is None:
        return "not mapped by the guest"
    if r.device:
        return "device (aperture)"
    if not r.shadow & 1:
        return "not filled"
    if r.write_protected:
        return "write-protected (dirty tracking)"
    return ""


def _wide_row(r) -> tuple[str, ...]:
    return (f"{r.gva:08x}",
            "-" if r.pde is None else f"{r.pde >> 12:05x} {flags(r.pde)}",
            "-" if r.pte is None else f"{r.pte >> 12:05x} {flags(r.pte)}",
            "-" if r.gpa is None else f"{r.gpa:08x}",
            flags(r.shadow) if r.shadow & 1 else "-",
            "-" if r.hpa is None else f"{r.hpa:08x}", _note(r))


def _narrow_row(r) -> tuple[str, ...]:
    if r.pde is None:                            # paging off: the page is its own frame
        guest = "-" if r.gpa is None else f"{r.gpa >> 12:05x} (off)"
    else:
        leaf = r.pte if r.pte is not None else r.pde      # the entry that maps the page
        guest = "-" if r.gpa is None else f"{r.gpa >> 12:05x} {compact_flags(leaf)}"
    shadow = f"{r.shadow >> 12:05x} {compact_flags(r.shadow)}" if r.shadow & 1 else "-"
    mark = "dev" if r.device else "wp" if r.write_protected else ""
    return (f" {r.gva:08x}", f" {guest}", f" {shadow}", f" {mark}" if mark else "")
