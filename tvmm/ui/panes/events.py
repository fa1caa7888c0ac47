"""The monitor's event queue for the selected guest, newest first, with
counters by kind; a filter narrows it to one kind, another (for a guest
with several processors) to one vCPU's events; selecting an event shows
its details.  Each event of a guest with several processors names its vCPU."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable, Static


# Kinds that stand out in the table: an NMI is rare and always worth seeing.
_KIND_STYLE = {"nmi": "bold red", "task-switch": "bold"}


class EventsPane(Vertical):
    def compose(self):
        yield Static(id="event-counts")
        yield DataTable(id="event-table", cursor_type="row")
        yield Static(id="event-detail")

    def on_mount(self) -> None:
        self.kind: str | None = None
        self.all_guests = False
        self.vcpu_filter: dict[str, int | None] = {}     # guest -> only this vCPU's events
        self.query_one(DataTable).add_columns("#", "insn", "kind", "detail")
        self._events = ()
        self._shown = None                               # what the table holds: events and filters
        self._smp: frozenset = frozenset()

    def vcpu_of(self, name: str) -> int | None:
        return self.vcpu_filter.get(name)

    def show(self, view, all_events=(), smp=frozenset()) -> None:
        """``smp``: the names of the guests with several vCPUs (their events name the vCPU)."""
        counts = " ".join(f"{k} {n}" for k, n in sorted(view.counts.items()))
        vcpu = None if self.all_guests or not view.smp else self.vcpu_filter.get(view.name)
        scope = "all guests" if self.all_guests else view.name
        if vcpu is not None:
            scope += f" · cpu{vcpu} only · totals"      # the counters are the guest's
        flt = f" · only {self.kind}" if self.kind else ""
        self.query_one("#event-counts", Static).update(
            Text(f"{scope}{flt}: " + (counts or "no events yet")))
        source = all_events if self.all_guests else view.events
        events = [e for e in source if (self.kind is None or e.kind == self.kind)
                  and (vcpu is None or e.vcpu == vcpu)]
        self._smp = frozenset(smp) | ({view.name} if view.smp else frozenset())
        shown = (events[0].seq if events else None, len(events), view.name, self.all_guests, self.kind, vcpu)
        if shown == self._shown:
            return
        self._shown = shown
        self._events = tuple(events)
        table = self.query_one(DataTable)
        table.clear()
        for e in events[:200]:
            table.add_row(str(e.seq), str(e.icount), Text(self._label(e), style=_KIND_STYLE.get(e.kind, "")),
                          Text(e.detail[:60]), key=str(e.seq))

    def _label(self, e) -> str:
        cpu = f"cpu{e.vcpu}" if e.guest in self._smp else ""
        if self.all_guests:
            return f"{e.guest}{'/' + cpu if cpu else ''}: {e.kind}"
        return f"{cpu} {e.kind}" if cpu else e.kind

    def cycle_filter(self, kinds: list[str]) -> None:
        options = [None] + sorted(kinds)
        self.kind = options[(options.index(self.kind) + 1) % len(options)] if self.kind in options else None
        self._events = ()

    def cycle_vcpu(self, name: str, n: int) -> int | None:
        """The next vCPU filter of guest ``name`` (with ``n`` vCPUs): all →
        cpu0 → cpu1 … → all.  Returns it."""
        options = [None] + list(range(n))
        now = self.vcpu_filter.get(name)
        new = options[(options.index(now) + 1) % len(options)] if now in options else None
        self.vcpu_filter[name] = new
        self._events = ()
        return new

    def on_data_table_row_highlighted(self, message) -> None:
        if message.row_key is None:
            return
        for e in self._events:
            if str(e.seq) == message.row_key.value:
                cpu = f", vCPU {e.vcpu}" if e.guest in self._smp else ""
                self.query_one("#event-detail", Static).update(
                    Text(f"event #{e.seq}, guest {e.guest}{cpu}, instruction {e.icount} — {e.kind}\n{e.detail}"))
