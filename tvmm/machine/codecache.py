"""Compiled translated units, kept on disk between runs.

Compiling the Python source of a translated unit (``translate._compile``)
costs milliseconds: booting xv6 compiles a few hundred units, a second or
two of the run.  The same kernel yields the same unit sources run after
run, so their code objects are kept in a cache directory, one file per
source, named by a hash of the source, its file name and the interpreter's
bytecode version, and holding ``marshal.dumps`` of the code object.

Invariants:
- A code object comes from the cache only for the exact source and name it
  was compiled from, by this interpreter's bytecode version: what runs is
  what ``compile`` would have returned.  The guest cannot tell the
  difference (nothing here depends on it, the clock or the order of runs).
- The cache is an optimisation only.  A directory that cannot be created,
  read or written, or a file that does not load, means compiling as if
  there were no cache; nothing is reported.  Files are written whole
  (a temporary file renamed), so concurrent runs never read half a file.
- ``TVMM_CODE_CACHE`` names the directory; ``off`` (or empty) turns the
  cache off.  The default is ``$XDG_CACHE_HOME/tvmm/units``, else
  ``~/.cache/tvmm/units``.  A directory grown past ``MAX_FILES`` files is
  emptied when a process first uses it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import tempfile
import types

MAX_FILES = 20_000
_TAG = importlib.util.MAGIC_NUMBER

_dir: str | None = None
_checked = False
hits = 0            # loaded from the cache, in this process
misses = 0          # compiled (and stored), in this process


def cache_dir() -> str | None:
    """The directory in use now (None: off), from the environment."""
    env = os.environ.get("TVMM_CODE_CACHE")
    if env is not None:
        return None if env.strip() in ("", "off") else env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tvmm", "units")


def _ready(path: str) -> bool:
    global _dir, _checked
    if _checked and _dir == path:
        return True
    try:
        os.makedirs(path, exist_ok=True)
        with os.scandir(path) as it:
            names = [e.name for e in it]
        if len(names) > MAX_FILES:
            for name in names:
                try:
                    os.unlink(os.path.join(path, name))
                except OSError:
                    pass
    except OSError:
        return False
    _dir, _checked = path, True
    return True


def compile_unit(src: str, name: str):
    """``compile(src, name, "exec")``, through the cache when it is on."""
    global hits, misses
    path = cache_dir()
    if path is None or not _ready(path):
        misses += 1
        return compile(src, name, "exec")
    key = hashlib.sha256(_TAG + name.encode() + b"\0" + src.encode()).hexdigest()[:40]
    file = os.path.join(path, key)
    try:
        with open(file, "rb") as f:
            code = marshal.loads(f.read())
        if isinstance(code, types.CodeType) and code.co_filename == name:
            hits += 1
            return code
    except (OSError, EOFError, ValueError, TypeError):
        pass
    misses += 1
    code = compile(src, name, "exec")
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps(code))
        os.replace(tmp, file)
    except OSError:
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass
    return code
