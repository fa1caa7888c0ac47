"""``monitor …`` commands (qRcmd): what the monitor knows about this guest.

    help                 this list
    walk ADDR            the guest's own page walk for ADDR (directory, table, frame), as the vCPU gdb last
                         selected (Hg) sees it
    shadow ADDR          the monitor's shadow entry for ADDR and the host frame
    events [N]           the guest's last N monitor events (default 20)
    phys on|off          memory access by guest-physical address (default off: guest-virtual)
    info                 state, instruction count, exits by kind; each vCPU's state and EIP when there are several
    guests               every guest on this machine: state and instruction count
"""

from __future__ import annotations

from ..monitor import inspect


def run_command(target, text: str) -> str:
    words = text.split()
    if not words or words[0] == "help":
        return __doc__.split("\n\n", 1)[1]
    cmd, args = words[0], words[1:]
    try:
        fn = _COMMANDS[cmd]
    except KeyError:
        return f"unknown monitor command {cmd!r} (try: monitor help)\n"
    try:
        return fn(target, args)
    except (ValueError, IndexError):
        return f"usage: {[line for line in __doc__.splitlines() if line.strip().startswith(cmd)][0].strip()}\n"


def _addr(args) -> int:
    return int(args[0], 0) & 0xFFFFFFFF


def _walk(target, args) -> str:
    va = _addr(args)
    cpu = target.cpu
    row = inspect.walk(target.guest, va, cpu=cpu)
    if row.pde is None:
        return f"{va:#010x}: paging is off; guest-physical {va & cpu.a20:#010x}\n"
    out = [f"CR3 {cpu.guest_cr(3):#010x}", f"PDE[{va >> 22}] = {row.pde:#010x} [{inspect.flags(row.pde)}]"]
    if row.pte is not None:
        out.append(f"PTE[{(va >> 12) & 1023}] = {row.pte:#010x} [{inspect.flags(row.pte)}]")
    elif row.pde & 1:
        out.append("4 MiB page")
    out.append(f"-> guest-physical {row.gpa | (va & 0xFFF):#010x}" if row.gpa is not None else "-> not present")
    return "\n".join(out) + "\n"


def _shadow(target, args) -> str:
    va = _addr(args)
    sh = target.guest.shadow
    e = sh.entry(va)
    if not e & 1:
        return f"{va:#010x}: no shadow entry (the next access takes a hidden fault)\n"
    hpa = (e & 0xFFFFF000) | (va & 0xFFF)
    return (f"{va:#010x}: shadow entry {e:#010x} [{inspect.flags(e)}] -> host-physical {hpa:#010x} "
            f"(shadow root {sh.root_hpa:#010x})\n")


def _events(target, args) -> str:
    n = int(args[0]) if args else 20
    g = target.guest
    return "".join(f"{e}\n" for e in g.log.recent(g.name, limit=n)) or "no events\n"


def _phys(target, args) -> str:
    if args[0] not in ("on", "off"):
        raise ValueError(args[0])
    target.physical = args[0] == "on"
    return f"memory access is now by guest-{'physical' if target.physical else 'virtual'} address\n"


def _info(target, args) -> str:
    g = target.guest
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(g.log.by_kind(g.name).items()))
    history = g.timeline.describe() if g.timeline is not None else "history: none (--history 0)"
    cpus = ""
    if len(g.vcpus) > 1:
        running = target.stopped_cpu()
        cpus = "".join(f"CPU#{c.index} (thread {c.index + 1}): {target.cpu_state(c.index)}, EIP {c.eip:#010x}, "
                       f"{c.icount} instructions{' (ran last)' if c.index == running else ''}\n" for c in g.vcpus)
    return (f"guest {g.name}: {g.state} {g.reason}\ninstructions {g.icount}\n{cpus}{history}\n"
            f"events: {kinds or 'none'}\n")


def _guests(target, args) -> str:
    return "".join(f"{g.name}: {g.state} {g.icount} instructions{' (this debugger)' if g is target.guest else ''}\n"
                   for g in target.guest.monitor.guests)


_COMMANDS = {"walk": _walk, "shadow": _shadow, "events": _events, "phys": _phys, "info": _info,
             "guests": _guests}
