"""tvmm: a terminal debugger for guest operating systems under a trap-and-emulate VMM."""

__version__ = "0.1.0"

_API = ("boot", "Machine", "Guest", "Symbol", "Text", "UsageError", "ExpectTimeout", "GuestEnded", "TvmmError")


def __getattr__(name):
    """The public API (tvmm/api.py), imported on first use: ``import tvmm`` stays cheap."""
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'tvmm' has no attribute {name!r}")
