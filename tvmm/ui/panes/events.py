"""The monitor's event queue for the selected guest, newest first, with
counters by kind; a filter narrows it to one kind; selecting an event shows
its details."""

from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import DataTable, Static


class EventsPane(Vertical):
    def compose(self):
        yield Static(id="event-counts")
        yield DataTable(id="event-table", cursor_type="row")
        yield Static(id="event-detail")

    def on_mount(self) -> None:
        self.kind: str | None = None
        self.query_one(DataTable).add_columns("#", "insn", "kind", "detail")
        self._events = ()

    def show(self, view) -> None:
        counts = " ".join(f"{k} {n}" for k, n in sorted(view.counts.items()))
        flt = f"[filter: {self.kind}] " if self.kind else ""
        self.query_one("#event-counts", Static).update(flt + (counts or "no events yet"))
        events = [e for e in view.events if self.kind is None or e.kind == self.kind]
        if tuple(events[:1]) == self._events[:1] and len(events) == len(self._events):
            return
        self._events = tuple(events)
        table = self.query_one(DataTable)
        table.clear()
        for e in events[:200]:
            table.add_row(str(e.seq), str(e.icount), e.kind, e.detail[:60], key=str(e.seq))

    def cycle_filter(self, kinds: list[str]) -> None:
        options = [None] + sorted(kinds)
        self.kind = options[(options.index(self.kind) + 1) % len(options)] if self.kind in options else None
        self._events = ()

    def on_data_table_row_highlighted(self, message) -> None:
        if message.row_key is None:
            return
        for e in self._events:
            if str(e.seq) == message.row_key.value:
                self.query_one("#event-detail", Static).update(
                    f"event #{e.seq} at instruction {e.icount} — {e.kind}\n{e.detail}")
