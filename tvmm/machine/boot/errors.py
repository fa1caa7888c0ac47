"""Errors a boot path reports about the user's files (one clear line each)."""


class BootError(Exception):
    """A kernel, disk image or ROM that cannot be booted; the message says why."""
