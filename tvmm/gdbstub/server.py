"""The asyncio transport: one listening socket per guest.

``GdbServer(monitor, host, port)`` listens on ``port`` for the first guest,
``port + 1`` for the second, and so on (port 0: the system picks each).  One
debugger per guest at a time; a second connection to a guest that has one is
refused.  The machine is never blocked by a debugger: connections only
queue bytes for their session, and ``poll()`` — called by the run loop after
each slice — sends the stop replies of guests that stopped meanwhile.  A
dropped connection detaches (breakpoints go, the guest runs on).
"""

from __future__ import annotations

import asyncio
import socket

from .session import Session
from ..monitor.timeline import Timeline
from .target import GuestTarget


class _Conn:
    def __init__(self, session: Session, writer: asyncio.StreamWriter):
        self.session, self.writer = session, writer


class GdbServer:
    def __init__(self, monitor, host: str = "127.0.0.1", port: int = 1234):
        self.monitor, self.host, self.port = monitor, host, port
        self.servers: list[asyncio.base_events.Server] = []
        self.endpoints: list[tuple[str, str, int]] = []     # (guest, host, port)
        self.conns: dict[str, _Conn] = {}

    async def start(self) -> list[tuple[str, str, int]]:
        """Bind every listener (all or nothing); OSError when a port is taken."""
        try:
            for i, guest in enumerate(self.monitor.guests):
                port = self.port + i if self.port else 0
                server = await asyncio.start_server(
                    lambda r, w, g=guest: self._serve(g, r, w), self.host, port, reuse_address=True)
                self.servers.append(server)
                bound = server.sockets[0].getsockname()[1]
                self.endpoints.append((guest.name, self.host, bound))
        except OSError:
            await self.close()
            raise
        return self.endpoints

    @property
    def attached(self) -> set[str]:
        return set(self.conns)

    async def _serve(self, guest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if guest.name in self.conns:
            writer.close()                      # one debugger per guest
            return
        guest.pause("stopped by gdb")             # gdb takes a target as stopped once attached
        # history from here on, for reverse execution (the UI may keep one already)
        own_timeline = guest.timeline is None and guest.monitor.history_budget > 0
        if own_timeline:
            guest.timeline = Timeline(guest, budget=guest.monitor.history_budget)
        conn = _Conn(Session(GuestTarget(guest, guest.timeline)), writer)
        self.conns[guest.name] = conn
        guest.debugger_attached = True
        try:
            while not conn.session.detached:
                data = await reader.read(4096)
                if not data:
                    break
                out = conn.session.receive(data)
                if out:
                    writer.write(out)
                    await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass                                # a dropped connection, or the server closing
        finally:
            if not conn.session.detached:
                conn.session.detach()
            self.conns.pop(guest.name, None)
            guest.debugger_attached = False
            if own_timeline and guest.timeline is not None:
                guest.timeline.close()
                guest.timeline = None
            writer.close()

    def poll(self) -> None:
        """Send the stop replies owed to debuggers whose guest stopped."""
        for conn in list(self.conns.values()):
            timeline = conn.session.target.guest.timeline
            if timeline is not None and conn.session.target.guest.alive:
                timeline.note()
            out = conn.session.poll()
            if out:
                conn.writer.write(out)

    async def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.writer.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()
        self.servers.clear()


def check_ports(host: str, port: int, n: int) -> str | None:
    """Can ``n`` listeners bind from ``port`` on?  (For callers that start
    the server later, in another thread.)  Returns a one-line problem or None."""
    if port == 0:
        return None
    for p in range(port, port + n):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, p))
            except OSError as e:
                return f"cannot listen for gdb on {host}:{p}: {e.strerror or e}"
    return None
