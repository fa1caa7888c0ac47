"""``tvmm bench``: guest instructions retired per second on fixed workloads.

tvmm's figure is measured in this process; unicorn's, when unicorn is
installed, in a child process running ``unicorn_ref.py`` as a script, so
tvmm itself never imports unicorn.  Where ``floor.py`` has the workload's
loop as hand-written, idealized Python, its speed is the "CPython floor":
what no Python translation of the workload can beat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ..machine import CPU, PhysicalMemory, StopKind
from ..machine.boot_state import enter_flat32
from ..machine.consts import CR0_PG
from . import floor
from . import kernels as K
from . import workloads as W

REGS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


def load_workload(w: W.Workload, mem, cpu) -> None:
    """The workload's memory image and starting state, on a bare CPU or a
    guest's virtual one (``set_cr0``/``set_cr3`` take the guest's values)."""
    for pa, data in W.build_memory_image(w):
        mem.write_bytes(pa, data)
    enter_flat32(cpu, W.CODE, W.STACK_TOP)
    cpu.gdtr_base, cpu.gdtr_limit = W.GDT, 23
    cpu.idtr_base, cpu.idtr_limit = W.IDT, 256 * 8 - 1
    for name, v in w.regs.items():
        cpu.regs[REGS.index(name)] = v
    if w.paging:
        cpu.set_cr3(W.PD)
        cpu.set_cr0(cpu.guest_cr(0) | CR0_PG)


def setup_tvmm(w: W.Workload) -> CPU:
    mem = PhysicalMemory(W.MEM_SIZE)
    cpu = CPU(mem)
    load_workload(w, mem, cpu)
    return cpu


def run_tvmm(w: W.Workload) -> dict:
    cpu = setup_tvmm(w)
    t0 = time.perf_counter()
    stop = cpu.run(10**10)
    dt = time.perf_counter() - t0
    if stop.kind != StopKind.HALTED:
        raise RuntimeError(f"workload {w.name} did not finish: {stop}")
    return {"instructions": cpu.icount, "seconds": dt, "mips": cpu.icount / dt / 1e6}


def run_guest(w: W.Workload) -> dict:
    """The same workload as a guest under the monitor: its speed and its
    exits by kind per million instructions."""
    from ..guestspec import GuestSpec
    from ..monitor.events import EXIT_KINDS
    from ..monitor.vmm import Monitor
    spec = GuestSpec(name="bench", mem=W.MEM_SIZE, boot="multiboot", kernel="-")
    monitor = Monitor(Monitor.host_size_for([spec]))
    g = monitor.add_guest(spec, boot=False)
    load_workload(w, g.gmem, g.vcpu)
    t0 = time.perf_counter()
    while g.runnable:
        monitor.run(10**7)
    dt = time.perf_counter() - t0
    if g.state != "halted":
        raise RuntimeError(f"workload {w.name} did not finish as a guest: {g.state} {g.reason}")
    kinds = monitor.log.by_kind("bench")
    exits = {k: float(f"{kinds[k] * 1e6 / g.icount:.3g}") for k in EXIT_KINDS if kinds.get(k)}
    return {"instructions": g.icount, "seconds": dt, "mips": g.icount / dt / 1e6, "exits_per_minsn": exits}


def run_unicorn(w: W.Workload, instructions: int) -> dict | None:
    """Unicorn's time for the same program; None when unicorn is missing or
    the workload needs IDT delivery (unicorn hands exceptions to hooks)."""
    if not w.unicorn:
        return None
    script = os.path.join(os.path.dirname(__file__), "unicorn_ref.py")
    proc = subprocess.run([sys.executable, script, w.name], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    dt = json.loads(proc.stdout)["seconds"]
    return {"seconds": dt, "mips": instructions / dt / 1e6}


def run_unicorn_kernel(kw: K.KernelWorkload, instructions: int, cmdline: str = "") -> dict | None:
    """Unicorn's time for a kernel workload's timed stretch, and its
    ``bench_result``; None when unicorn is missing or fails, or the kernel
    needs IDT delivery.  ``instructions`` is tvmm's count, which includes
    the final ``cli; hlt`` that unicorn stops before."""
    if not kw.unicorn:
        return None
    script = os.path.join(os.path.dirname(__file__), "unicorn_ref.py")
    proc = subprocess.run([sys.executable, script, "--kernel", kw.name, cmdline], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    doc = json.loads(proc.stdout)
    dt = doc["seconds"]
    return {"seconds": dt, "mips": (instructions - 2) / dt / 1e6, "result": doc["result"]}


def main(argv: list[str]) -> int:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):            # one line, exit 2
            print(f"tvmm bench: {message}", file=sys.stderr)
            raise SystemExit(2)
    ap = Parser(prog="tvmm bench", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--workload", action="append", choices=[w.name for w in W.ALL] + [k.name for k in K.ALL],
                    help="run only this workload (repeatable)")
    ap.add_argument("--no-unicorn", action="store_true", help="skip unicorn's reference figures")
    ap.add_argument("--no-guest", action="store_true", help="skip the runs as a guest under the monitor")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the CPython floor (hand-written Python of the same loop, where there is one)")
    ap.add_argument("--no-sessions", action="store_true", help="skip the record/replay figures")
    ap.add_argument("--no-history", action="store_true",
                    help="skip the history figures on the 256 MiB bigmem guest (about a minute)")
    ap.add_argument("--n", type=int, metavar="N",
                    help="iterations for the kernel workloads (kernel command line n=N; "
                         "default: each workload's bench_n, about two seconds); the flat workloads are fixed")
    args = ap.parse_args(argv)
    if args.n is not None and args.n < 1:
        ap.error("--n must be at least 1")
    chosen = [w for w in W.ALL + K.ALL if not args.workload or w.name in args.workload]
    out = {}
    for w in chosen:
        kernel = isinstance(w, K.KernelWorkload)
        cmdline = f"n={args.n if args.n is not None else w.bench_n}" if kernel else ""
        ours = K.run_bare(w, cmdline) if kernel else run_tvmm(w)
        ref = None if args.no_unicorn else (run_unicorn_kernel(w, ours["instructions"], cmdline) if kernel
                                            else run_unicorn(w, ours["instructions"]))
        guest = None if args.no_guest else (K.run_guest(w, cmdline) if kernel else run_guest(w))
        fl = None if args.no_floor else floor.measure(w.name)
        out[w.name] = {"mips": round(ours["mips"], 3), "instructions": ours["instructions"],
                       "seconds": round(ours["seconds"], 3),
                       "unicorn_mips": None if ref is None else round(ref["mips"], 3),
                       "guest_mips": None if guest is None else round(guest["mips"], 3),
                       "guest_exits_per_minsn": None if guest is None else guest["exits_per_minsn"],
                       "guest_ratio": None if guest is None else round(guest["mips"] / ours["mips"], 3),
                       "floor_mips": None if fl is None else round(fl["mips"], 3)}
        if kernel:
            # bench_result, as computed here, as a guest and by unicorn: they must agree
            results = {"bare": ours["result"]}
            if guest is not None:
                results["guest"] = guest["result"]
            if ref is not None:
                results["unicorn"] = ref["result"]
            out[w.name]["result"] = ours["result"]
            if len(set(results.values())) > 1:
                out[w.name]["result_mismatch"] = results
                print(f"tvmm bench: {w.name}: bench_result differs: "
                      + ", ".join(f"{k} {v:#x}" for k, v in results.items()), file=sys.stderr, flush=True)
        if not args.json:
            u = "n/a" if ref is None else f"{ref['mips']:.1f}"
            line = (f"{w.name:18} {ours['mips']:7.2f} MIPS  ({ours['instructions']:,} insns in "
                    f"{ours['seconds']:.2f} s)   unicorn: {u} MIPS")
            if guest is not None:
                ex = ", ".join(f"{k} {v:g}" for k, v in guest["exits_per_minsn"].items()) or "none"
                line += f"\n{'':18} as a guest: {guest['mips']:7.2f} MIPS, exits per M insns: {ex}"
            if fl is not None:
                line += f"\n{'':18} CPython floor: {fl['mips']:7.2f} MIPS (the same loop as idealized Python)"
            print(line, flush=True)
    sessions = None
    if not args.no_sessions and not args.workload:
        from .sessions import run as run_sessions
        sessions = run_sessions()
        if sessions is not None and not args.json:
            s = sessions
            print(f"{'record/replay':18} recording costs {s['record_overhead_pct']:+.1f}% "
                  f"({s['session_bytes']:,} bytes of session for {s['instructions']:,} insns); snapshot "
                  f"{s['snapshot_bytes']:,} bytes, taken in {s['snapshot_take_ms']} ms, restored in "
                  f"{s['snapshot_restore_ms']} ms; seeking back 150k insns: {s['seek_back_150k_ms']} ms")
    history = None
    if not args.no_history and not args.workload:
        from .history import describe, run as run_history
        history = run_history()
        if history is not None and not args.json:
            print(describe(history), flush=True)
    if args.json:
        print(json.dumps({"workloads": out, "sessions": sessions, "history": history}, indent=2))
    return 0
