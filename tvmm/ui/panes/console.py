"""The guest's console: its serial output and its CGA screen; what the user
types into the input line is sent to the guest's COM1."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Input, Static


class ConsolePane(Vertical):
    def compose(self):
        yield Static(id="serial")
        yield Input(placeholder="type to the guest (Enter sends a line)", id="console-input")

    def show(self, view, screen: bool) -> None:
        if screen:
            text = "\n".join(line.rstrip() for line in view.screen).rstrip("\n")
        else:
            lines = view.console.decode("latin-1").replace("\r", "").split("\n")
            # the rows left above the input line (the pane's height less the input's)
            rows = (self.size.height or 15) - self.query_one(Input).outer_size.height
            text = "\n".join(lines[-max(3, rows):])
        self.query_one("#serial", Static).update(Text(text))      # guest output is never markup
