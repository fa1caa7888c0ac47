"""The monitor's event queue for the selected guest, newest first, with
counters by kind; a filter narrows it to one kind; selecting an event shows
its details."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable, Static


class EventsPane(Vertical):
    def compose(self):
        yield Static(id="event-counts")
        yield DataTable(id="event-table", cursor_type="row")
        yield Static(id="event-detail")

    def on_mount(self) -> None:
        self.kind: str | None = None
        self.all_guests = False
        self.query_one(DataTable).add_columns("#", "insn", "kind", "detail")
        self._events = ()

    def show(self, view, all_events=()) -> None:
        counts = " ".join(f"{k} {n}" for k, n in sorted(view.counts.items()))
        scope = "all guests" if self.all_guests else view.name
        flt = f" · only {self.kind}" if self.kind else ""
        self.query_one("#event-counts", Static).update(
            Text(f"{scope}{flt}: " + (counts or "no events yet")))
        source = all_events if self.all_guests else view.events
        events = [e for e in source if self.kind is None or e.kind == self.kind]
        if tuple(events[:1]) == self._events[:1] and len(events) == len(self._events):
            return
        self._events = tuple(events)
        table = self.query_one(DataTable)
        table.clear()
        for e in events[:200]:
            table.add_row(str(e.seq), str(e.icount), Text(f"{e.guest}: {e.kind}" if self.all_guests else e.kind),
                          Text(e.detail[:60]), key=str(e.seq))

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
                    Text(f"event #{e.seq}, guest {e.guest}, instruction {e.icount} — {e.kind}\n{e.detail}"))
