"""Errors a boot path reports about the user's files (one clear line each)."""


class BootError(Exception):
    """A kernel, disk image or ROM that cannot be booted; the message says why."""


def read_file(path: str, what: str, limit: int | None = None) -> bytes:
    """The bytes of a user's file (at most ``limit`` + 1 of them), or one
    clear ``BootError`` line: "no such kernel file", "is a directory, not a
    kernel file", "cannot read kernel (…)"."""
    try:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)
    except FileNotFoundError:
        raise BootError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise BootError(f"{path}: is a directory, not a {what} file") from None
    except OSError as e:
        raise BootError(f"{path}: cannot read {what} ({e.strerror})") from None
