"""tvmm's terminal UI: every guest, its registers and code, its page tables
beside the monitor's shadow, the event queue, its console and memory.

The machine runs in a worker thread (``Engine``); the screen refreshes at a
steady rate from the engine's frozen views, so the UI stays responsive
while guests run flat out, and a paused machine costs nothing.  Messages go
up (key presses become engine commands), attributes go down (views are
handed to the panes).

A guest with several processors lists its vCPUs in the guests pane; the
selected vCPU (``selected_vcpu``; a guest's own row means its bootstrap
processor) is the one the registers, the disassembly, the page tables and
memory show, and the one stepping, step-over and run-to act on.
"""

from __future__ import annotations

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Input, TabbedContent, TabPane

from .engine import Engine
from .panes.breaks import BreaksPane
from .panes.console import ConsolePane
from .panes.disasm import DisasmPane
from .panes.events import EventsPane
from .panes.guests import GuestsPane, parse_key
from .panes.memory import MemoryPane
from .panes.pages import PagesPane
from .panes.registers import RegistersPane
from .symbols import Symbols

REFRESH = 0.1


class TvmmApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "tvmm"
    BINDINGS = [
        Binding("space", "toggle_run", "Run/pause"),
        Binding("a", "toggle_all", "All"),
        Binding("s", "step", "Step"),
        Binding("n", "step_over", "Over"),
        Binding("S", "step_back", "Back"),
        Binding("b", "toggle_breakpoint", "Break"),
        Binding("g", "prompt('run-to')", "Run to"),
        Binding("r", "reset", "Reset"),
        Binding("right_square_bracket", "next_guest", "Next guest", key_display="]"),
        Binding("left_square_bracket", "next_guest(-1)", "Prev guest", key_display="["),
        Binding("right_curly_bracket", "next_vcpu", "Next vCPU", key_display="}", show=False),
        Binding("left_curly_bracket", "next_vcpu(-1)", "Prev vCPU", key_display="{", show=False),
        Binding("c", "tab('console')", "Console"),
        Binding("e", "tab('events')", "Events"),
        Binding("E", "all_events", "All events"),
        Binding("f", "filter_events", "Filter"),
        Binding("F", "filter_vcpu", "CPU filter"),
        Binding("p", "tab('pages')", "Pages"),
        Binding("j", "prompt('pages')", "Jump"),
        Binding("m", "tab('memory')", "Memory"),
        Binding("x", "prompt('memory')", "Address"),
        Binding("l", "tab('breaks')", "Breaks"),
        Binding("v", "toggle_screen", "Screen"),
        Binding("i", "focus_input", "Type"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "cancel_prompt", "Cancel", show=False),
    ]

    selected: reactive[str] = reactive("")
    selected_vcpu: reactive[int] = reactive(0)

    def __init__(self, monitor, start_engine: bool = True, gdb_server=None, replay=None):
        super().__init__()
        self.monitor = monitor
        self.engine = Engine(monitor, server=gdb_server, replay=replay)
        self._told_endpoints = False
        self.start_engine = start_engine
        self.symbols = {g.name: Symbols.load(g.spec.kernel) for g in monitor.guests}
        self.show_screen = False
        self._generation = -1
        self._prompt_for = ""
        self._states: dict[str, str] = {}
        self._shown: tuple[str, int] | None = None        # (guest, vCPU) the panes showed last
        self._vcpu_asked: dict[str, int] = {}             # guest -> the vCPU its view is to show

    def compose(self) -> ComposeResult:
        with Vertical(id="left"):
            yield GuestsPane(id="guests")
            yield RegistersPane(id="registers")
        with Vertical(id="right"):
            yield DisasmPane(id="disasm")
            with TabbedContent(id="tabs", initial="console"):
                with TabPane("Console", id="console"):
                    yield ConsolePane(id="console-pane")
                with TabPane("Events", id="events"):
                    yield EventsPane(id="events-pane")
                with TabPane("Pages", id="pages"):
                    yield PagesPane(id="pages-pane")
                with TabPane("Memory", id="memory"):
                    yield MemoryPane(id="memory-pane")
                with TabPane("Breaks", id="breaks"):
                    yield BreaksPane(id="breaks-pane")
        yield Input(id="prompt", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.selected = self.monitor.guests[0].name if self.monitor.guests else ""
        self.set_interval(REFRESH, self.refresh_views)
        if self.start_engine:
            self.run_worker(self.engine.run_forever, thread=True, exclusive=True, name="machine")
        self.query_one(DisasmPane).focus()
        self.refresh_views()

    def on_unmount(self) -> None:
        self.engine.stop()

    # -- views down ----------------------------------------------------------------------
    def refresh_views(self, force: bool = False) -> None:
        engine = self.engine
        if engine.endpoints and not self._told_endpoints:
            self._told_endpoints = True
            self.notify("\n".join(f"gdb: guest {n} on {h}:{p}" for n, h, p in engine.endpoints), timeout=10)
        while not engine.notices.empty():
            self.notify(engine.notices.get_nowait(), severity="warning")
        if engine.generation == self._generation and not force:
            return
        self._generation = engine.generation
        views = engine.views
        self.query_one(GuestsPane).show(views, engine.speed)
        view = views.get(self.selected)
        if view is None:
            return
        shown = (view.name, view.vcpu)
        key = f"{view.name} cpu{view.vcpu}" if view.smp else view.name
        previous = self._states.get(key)
        stopped = view.state != "running"
        self._states[key] = view.state
        self.query_one(RegistersPane).show(view, stopped)
        follow = stopped or previous != view.state or shown != self._shown
        self._shown = shown
        self.query_one(DisasmPane).show(view, self.symbols.get(view.name), follow=follow)
        tab = self.query_one(TabbedContent).active
        if tab == "console":
            self.query_one(ConsolePane).show(view, self.show_screen)
        elif tab == "events":
            smp = frozenset(n for n, v in views.items() if v.smp)
            self.query_one(EventsPane).show(view, engine.all_events, smp)
        elif tab == "pages":
            self.query_one(PagesPane).show(view)
        elif tab == "memory":
            self.query_one(MemoryPane).show(view)
        elif tab == "breaks":
            self.query_one(BreaksPane).show(view, self.symbols.get(view.name))

    def watch_selected(self, _old: str, _new: str) -> None:
        if self.is_mounted:
            self.refresh_views(force=True)

    def on_tabbed_content_tab_activated(self, _msg) -> None:
        self.refresh_views(force=True)

    def watch_selected_vcpu(self, _old: int, _new: int) -> None:
        if self.is_mounted:
            self.refresh_views(force=True)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if message.data_table.id == "guests" and message.row_key is not None:
            name, vcpu = parse_key(message.row_key.value)
            self.select(name, vcpu or 0)

    def select(self, name: str, vcpu: int = 0) -> None:
        """Show guest ``name`` through its vCPU ``vcpu``."""
        if self._vcpu_asked.get(name, 0) != vcpu:
            self._vcpu_asked[name] = vcpu
            self.engine.show_vcpu(name, vcpu)
        self.selected_vcpu = vcpu
        self.selected = name

    # -- actions up ------------------------------------------------------------------------------
    def _view(self):
        return self.engine.views.get(self.selected)

    def action_toggle_run(self) -> None:
        v = self._view()
        if v is None:
            return
        (self.engine.pause if v.state == "running" else self.engine.resume)(v.name)

    def action_toggle_all(self) -> None:
        if any(v.state == "running" for v in self.engine.views.values()):
            self.engine.pause_all()
        else:
            self.engine.resume_all()

    def action_step(self) -> None:
        self.engine.step(self.selected, self.selected_vcpu)

    def action_step_back(self) -> None:
        self.engine.step_back(self.selected)

    def action_step_over(self) -> None:
        self.engine.step_over(self.selected, self.selected_vcpu)

    def action_toggle_breakpoint(self) -> None:
        disasm = self.query_one(DisasmPane)
        addr = disasm.cursor_addr
        if addr is not None:
            self.engine.toggle_breakpoint(self.selected, addr)

    def action_reset(self) -> None:
        self.engine.reset(self.selected)

    def action_next_guest(self, delta: int = 1) -> None:
        names = list(self.engine.views)
        if names:
            i = names.index(self.selected) if self.selected in names else 0
            self._move_to(names[(i + delta) % len(names)], None)

    def action_next_vcpu(self, delta: int = 1) -> None:
        """The selected guest's next (or previous) vCPU."""
        v = self._view()
        if v is None:
            return
        if not v.smp:
            self.notify(f"{v.name} has one vCPU")
            return
        self._move_to(v.name, (self.selected_vcpu + delta) % len(v.vcpus))

    def _move_to(self, name: str, vcpu: int | None) -> None:
        """Select a guest (its own row: ``vcpu`` None) or one of its vCPUs,
        and put the guests pane's cursor on that row."""
        self.select(name, vcpu or 0)
        pane = self.query_one(GuestsPane)
        row = pane.row_of(name, vcpu)
        if row is not None:
            pane.move_cursor(row=row)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_toggle_screen(self) -> None:
        self.show_screen = not self.show_screen
        self.refresh_views(force=True)

    def action_all_events(self) -> None:
        pane = self.query_one(EventsPane)
        pane.all_guests = not pane.all_guests
        pane._events = ()
        self.action_tab("events")
        self.refresh_views(force=True)

    def action_filter_vcpu(self) -> None:
        """Events of the selected guest: all vCPUs → cpu0 → cpu1 … → all."""
        v = self._view()
        if v is None:
            return
        if not v.smp:
            self.notify(f"{v.name} has one vCPU: its events are all cpu0's")
            return
        pane = self.query_one(EventsPane)
        pane.all_guests = False
        self.engine.filter_events(v.name, pane.cycle_vcpu(v.name, len(v.vcpus)))
        self.action_tab("events")
        self.refresh_views(force=True)

    def action_filter_events(self) -> None:
        v = self._view()
        if v is not None:
            self.query_one(EventsPane).cycle_filter(list(v.counts))
            self.action_tab("events")
            self.refresh_views(force=True)

    def action_focus_input(self) -> None:
        self.action_tab("console")
        self.query_one("#console-input", Input).focus()

    def action_prompt(self, purpose: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._prompt_for = purpose
        prompt.placeholder = {"run-to": "run to address or symbol", "pages": "page tables at address",
                              "memory": "memory at address (p:ADDR for physical)"}[purpose]
        prompt.value = ""
        prompt.disabled = False
        prompt.add_class("visible")
        prompt.focus()

    def action_cancel_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.remove_class("visible")
        prompt.disabled = True
        self.query_one(DisasmPane).focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "console-input":
            self.engine.send(self.selected, (message.value + "\n").encode("latin-1", "replace"))
            message.input.value = ""
            return
        message.input.remove_class("visible")
        message.input.disabled = True
        text = message.value.strip()
        physical = text.startswith("p:")
        addr = self._address(text[2:] if physical else text)
        if addr is None:
            self.notify(f"no such address or symbol: {text!r}", severity="error")
        elif self._prompt_for == "run-to":
            self.engine.run_to(self.selected, addr, self.selected_vcpu)
        elif self._prompt_for == "pages":
            self.engine.show_pages(self.selected, addr)
            self.action_tab("pages")
        elif self._prompt_for == "memory":
            self.engine.show_memory(self.selected, addr, physical)
            self.action_tab("memory")
        self.query_one(DisasmPane).focus()

    def _address(self, text: str) -> int | None:
        try:
            return int(text, 0) & 0xFFFFFFFF
        except ValueError:
            syms = self.symbols.get(self.selected)
            return syms.lookup(text) if syms else None

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for key, (title, help_, action) in {
            "run": ("Run or pause the selected guest", "space", self.action_toggle_run),
            "all": ("Run or pause every guest", "a", self.action_toggle_all),
            "step": ("Step one instruction", "s", self.action_step),
            "over": ("Step over a call", "n", self.action_step_over),
            "back": ("Step back one instruction", "S", self.action_step_back),
            "break": ("Toggle a breakpoint at the disassembly cursor", "b", self.action_toggle_breakpoint),
            "runto": ("Run to an address or symbol", "g", lambda: self.action_prompt("run-to")),
            "reset": ("Reset the selected guest", "r", self.action_reset),
            "next": ("Switch to the next guest", "]", self.action_next_guest),
            "nextcpu": ("Switch to the selected guest's next vCPU", "}", self.action_next_vcpu),
            "pages": ("Show page tables: guest beside shadow", "p", lambda: self.action_tab("pages")),
            "jump": ("Page tables at an address", "j", lambda: self.action_prompt("pages")),
            "events": ("Show the monitor's events", "e", lambda: self.action_tab("events")),
            "filter": ("Filter events by kind", "f", self.action_filter_events),
            "filtercpu": ("Filter events by vCPU", "F", self.action_filter_vcpu),
            "allevents": ("Events of every guest, or the selected one", "E", self.action_all_events),
            "breaks": ("List the breakpoints", "l", lambda: self.action_tab("breaks")),
            "console": ("Show the console", "c", lambda: self.action_tab("console")),
            "screen": ("Console: serial output or CGA screen", "v", self.action_toggle_screen),
            "memory": ("Show memory at an address", "x", lambda: self.action_prompt("memory")),
        }.items():
            yield SystemCommand(title, f"key: {help_}", action)
