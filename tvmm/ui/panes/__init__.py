"""The UI's panes: each draws one part of a frozen ``GuestView``."""
