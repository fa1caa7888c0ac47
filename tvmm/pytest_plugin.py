"""The tvmm pytest plugin (registered through the ``pytest11`` entry point:
installing tvmm is enough).

Fixtures:

- ``tvmm_guest`` — one booted ``tvmm.api.Guest``.  Its spec comes from
  indirect parametrization (``@pytest.mark.parametrize("tvmm_guest",
  [SPEC, ...], indirect=True)``), else ``@pytest.mark.tvmm(SPEC)``, else a
  ``tvmm_spec`` fixture you define (in conftest.py).  A spec is anything
  ``tvmm.boot`` takes: a ``--guest`` string, a ``GuestSpec`` or a dict of keys.
- ``tvmm_machine`` — a ``tvmm.api.Machine`` with several guests side by
  side: a list of specs from the same three places (``tvmm_specs``).

Each fixture's machine records its session from boot into the test's
``tmp_path``; when the test fails, the report gains a "tvmm session"
section naming that file and how to open it (``tvmm replay --ui FILE``, or
``tvmm replay --gdb PORT FILE`` to debug it, backwards too).
Torn down after the test.

Sessions as tests: every ``*.tvmm.jsonl`` file under the test paths, and
every ``*.jsonl`` file under a directory given with ``--tvmm-sessions DIR``,
is collected as one item that replays the session; a divergence fails it
with the guest, the instruction count, what differs and a diff of the
console around that point; an unreadable session fails with one line.
Relative file names in a session are looked up from the session's
directory upwards, then from pytest's root and invocation directories.
Every item is independent, so ``pytest -n auto`` (pytest-xdist) works.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

SUFFIX = ".tvmm.jsonl"
SESSION_NAME = "session.tvmm.jsonl"
_MACHINES = pytest.StashKey[list]()
_CONSOLE_LINES = 8


# -- options and collection ----------------------------------------------------------------------
def pytest_addoption(parser):
    group = parser.getgroup("tvmm", "tvmm guest kernels")
    group.addoption("--tvmm-sessions", action="append", default=[], metavar="DIR",
                    help="replay every *.jsonl session under DIR as a test (may be repeated)")


def pytest_configure(config):
    config.addinivalue_line("markers", "tvmm(*specs): the guest spec(s) for the tvmm_guest / tvmm_machine fixtures")
    dirs = [Path(d).resolve() for d in config.getoption("tvmm_sessions") or []]
    for d in dirs:
        if not d.is_dir():
            raise pytest.UsageError(f"--tvmm-sessions {d}: not a directory")
    config._tvmm_session_dirs = dirs
    have = {Path(a).resolve() for a in config.args}
    for d in dirs:
        if d not in have and not any(d.is_relative_to(a) for a in have if a.is_dir()):
            config.args.append(str(d))


def pytest_collect_file(file_path: Path, parent):
    name = file_path.name
    dirs = getattr(parent.config, "_tvmm_session_dirs", [])
    if name.endswith(SUFFIX) or (name.endswith(".jsonl") and any(file_path.is_relative_to(d) for d in dirs)):
        return SessionFile.from_parent(parent, path=file_path)
    return None


class SessionFile(pytest.File):
    def collect(self):
        yield SessionItem.from_parent(self, name="replay")


class SessionProblem(Exception):
    """A session that cannot be replayed at all (reported in one line)."""


class SessionDiverged(Exception):
    """A replay that differed from the recording (the report is the message)."""


class SessionItem(pytest.Item):
    def runtest(self):
        from .monitor.record import Divergence, SessionError, load, replay, specs_of
        from .monitor.vmm import Monitor
        path = self.path
        try:
            head, records = load(str(path))
            specs = specs_of(_resolved(head, path, self.config))
        except SessionError as e:
            raise SessionProblem(_one_line(e)) from None
        try:
            monitor = Monitor.with_guests(specs)
        except Exception as e:                        # a bad kernel, too much memory
            raise SessionProblem(f"{path.name}: cannot build its guests: {_one_line(e)}") from None
        try:
            replay(monitor, records)
        except Divergence as d:
            raise SessionDiverged(divergence_report(path, monitor, records, d)) from None
        except SessionError as e:                      # an input the replayed guest rejects
            raise SessionProblem(f"{path.name}: {_one_line(e)}") from None
        finally:
            for g in list(monitor.guests):
                monitor.remove_guest(g)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, SessionProblem):
            return f"unreadable tvmm session: {excinfo.value}"
        if isinstance(excinfo.value, SessionDiverged):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"tvmm session {self.path.name}"


def _resolved(head: dict, path: Path, config) -> dict:
    """The session header with relative file names made absolute where a
    file by that name exists (see the module docstring)."""
    bases = [p for p in [path.parent, *path.parent.parents]]
    bases += [Path(config.rootpath), Path(config.invocation_params.dir), Path.cwd()]
    guests = []
    for g in head.get("guests", []):
        spec = dict(g.get("spec", {}))
        for key in g.get("files", {}):
            value = spec.get(key)
            if isinstance(value, str) and not os.path.isabs(value):
                for base in bases:
                    if (base / value).is_file():
                        spec[key] = str(base / value)
                        break
        guests.append({**g, "spec": spec})
    return {**head, "guests": guests}


def divergence_report(path: Path, monitor, records: list[dict], d) -> str:
    """Guest, instruction count, what differs and the console around it."""
    recorded = "".join(r.get("out", "") for r in records
                       if r.get("t") == "digest" and r.get("guest") == d.guest and r.get("time", 0) <= d.time)
    try:
        got = bytes(monitor.guest(d.guest).console).decode("latin-1")
    except KeyError:
        got = ""
    want_lines, got_lines = recorded.replace("\r", "").splitlines(), got.replace("\r", "").splitlines()
    common = 0
    while common < min(len(want_lines), len(got_lines)) and want_lines[common] == got_lines[common]:
        common += 1
    lo = max(0, common - _CONSOLE_LINES)
    diff = list(difflib.unified_diff(want_lines[lo:common + _CONSOLE_LINES], got_lines[lo:common + _CONSOLE_LINES],
                                     "recorded", "replayed", lineterm="", n=_CONSOLE_LINES))
    if diff:
        console = "console around the point (recorded vs replayed):\n" + "\n".join("  " + line for line in diff)
    else:
        tail = got_lines[-_CONSOLE_LINES:]
        console = "console is the same up to this point; it ends with:\n" + \
            ("\n".join(f"  | {line}" for line in tail) if tail else "  (empty)")
    return (f"tvmm session {path.name} diverged\n"
            f"  guest: {d.guest}\n"
            f"  instruction count: {d.time}\n"
            f"  what differs: {d.what}\n"
            f"{console}\n"
            f"open it with: tvmm replay --ui {path}   (or under gdb: tvmm replay --gdb PORT {path})")


# -- fixtures ---------------------------------------------------------------------------------------
def _specs_from(request, fixture: str, many: bool):
    if hasattr(request, "param"):
        specs = request.param
    else:
        marker = request.node.get_closest_marker("tvmm")
        if marker is not None:
            specs = list(marker.args) or ([marker.kwargs] if marker.kwargs else [])
            if not many:
                specs = specs[0] if marker.args else (marker.kwargs or None)
        else:
            try:
                specs = request.getfixturevalue(fixture)
            except pytest.FixtureLookupError:
                raise pytest.UsageError(
                    f"{request.node.nodeid}: {request.fixturename} needs guest spec(s): parametrize it "
                    f"(indirect=True), mark the test @pytest.mark.tvmm(...) or define a {fixture} fixture") from None
    if many and (isinstance(specs, (str, dict)) or not hasattr(specs, "__iter__")):
        specs = [specs]
    return specs


def _boot(request, tmp_path, specs, many: bool):
    from . import api
    machine = api.Machine(*specs) if many else api.Machine(specs if not isinstance(specs, dict) else
                                                            api.make_spec(**specs))
    machine.record(tmp_path / SESSION_NAME, _auto=True)
    request.node.stash.setdefault(_MACHINES, []).append(machine)
    return machine


@pytest.fixture
def tvmm_guest(request, tmp_path):
    """One booted guest (``tvmm.api.Guest``), recorded, torn down after the test."""
    machine = _boot(request, tmp_path, _specs_from(request, "tvmm_spec", many=False), many=False)
    yield machine.guests[0]
    machine.close()


@pytest.fixture
def tvmm_machine(request, tmp_path):
    """Several guests side by side (``tvmm.api.Machine``), recorded, torn down after the test."""
    machine = _boot(request, tmp_path, _specs_from(request, "tvmm_specs", many=True), many=True)
    yield machine
    machine.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    machines = item.stash.get(_MACHINES, None)
    if not machines or not rep.failed or call.when == "teardown":
        return
    for machine in machines:
        path = machine.stop_recording()
        if not path:
            continue
        note = f"\n({machine.record_note})" if machine.record_note else ""
        names = ", ".join(f"{g.name} at instruction count {g.icount} ({g.state})" for g in machine.guests)
        rep.sections.append(("tvmm session", f"the session up to the failure ({names}) is in\n  {path}{note}\n"
                                             f"open it with: tvmm replay --ui {path}   (or under gdb: tvmm replay --gdb PORT {path})"))


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
