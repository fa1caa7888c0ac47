"""The command line: usage errors, and the benchmark's JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys

from tvmm.bench import setup_tvmm, workloads as W
from tvmm.cli import main


def test_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command" in err


def test_bench_json_contract():
    out = subprocess.run([sys.executable, "-m", "tvmm", "bench", "--json", "--workload", "call-ret",
                          "--workload", "page-fault-loop"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert set(doc["workloads"]) == {"call-ret", "page-fault-loop"}
    for name, fig in doc["workloads"].items():
        assert fig["mips"] > 0 and fig["instructions"] > 0
        assert "unicorn_mips" in fig
    # unicorn can run call-ret (no IDT delivery needed) but not the #PF loop
    assert doc["workloads"]["call-ret"]["unicorn_mips"] > 0
    assert doc["workloads"]["page-fault-loop"]["unicorn_mips"] is None
    # the same programs as guests under the monitor: speed and exits by kind
    pf = doc["workloads"]["page-fault-loop"]["guest_exits_per_minsn"]
    assert doc["workloads"]["call-ret"]["guest_mips"] > 0
    assert pf["pf-reflected"] > 1000 and pf["pf-hidden"] > 0      # the guest's own faults, reflected
    # the CPython floor is there for call-ret, which floor.py writes out, and only there
    assert doc["workloads"]["call-ret"]["floor_mips"] > 0
    assert doc["workloads"]["page-fault-loop"]["floor_mips"] is None


def test_output_into_a_closed_pipe_ends_quietly():
    p = subprocess.Popen([sys.executable, "-m", "tvmm", "bench", "--json", "--workload", "call-ret", "--no-guest",
                          "--no-unicorn", "--no-floor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()                     # the reader is gone before anything is written (| head -0)
    err = p.stderr.read().decode()
    assert p.wait() == 1 and err == ""


def test_bench_workloads_compute_what_they_should():
    cpu = setup_tvmm(W.PF_LOOP)
    assert cpu.run(10**8).kind.value == "halted"
    # 40 sweeps x 256 pages, each page fault mapped by the guest's own handler
    assert cpu.regs[3] == 0 and cpu.icount == 205_161
    cpu = setup_tvmm(W.CALL_RET)
    cpu.run(10**8)
    assert cpu.regs[0] == 3 * 1 and cpu.regs[1] == 0     # g(1) = 3*1 on the last iteration


def test_bench_usage_error_is_one_line():
    r = subprocess.run([sys.executable, "-m", "tvmm", "bench", "--workload", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "invalid choice" in r.stderr


def test_bench_reports_record_replay_costs():
    out = subprocess.run([sys.executable, "-m", "tvmm", "bench", "--json", "--no-unicorn", "--no-guest",
                          "--no-history"], capture_output=True, text=True, check=True)
    s = json.loads(out.stdout)["sessions"]
    assert s["instructions"] > 1_000_000 and s["session_bytes"] > 0
    assert 0 < s["snapshot_bytes"] < 4 << 20
    assert s["snapshot_take_ms"] > 0 and s["snapshot_restore_ms"] > 0 and s["seek_back_150k_ms"] > 0
    assert "record_overhead_pct" in s


def test_ui_errors_name_the_command_used():
    r = subprocess.run([sys.executable, "-m", "tvmm", "ui", "--guest", "kernel=/no/such.elf"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr == "tvmm ui: /no/such.elf: no such kernel file\n"


def test_bench_history_figures_on_a_small_bigmem():
    """The history block of ``tvmm bench`` (which runs a 256 MiB guest for
    minutes), scaled down: every figure is there and plausible."""
    from tvmm.bench.history import REPEAT, describe, run
    h = run(mem=32 << 20, insns=12_000_000, long=14_000_000, seeks=(100_000, 1_000_000), repeat=1)
    for name in ("ui_history", "gdb_continue", "recording"):
        assert 0.2 < h[f"{name}_ratio"] < 5 and h[f"{name}_fill_ratio"] > 0 and h[f"{name}_steady_ratio"] > 0
    assert 0 < h["history_bytes"] <= 256 << 20 and h["history_checkpoints"] >= 2
    assert h["checkpoint_quiet_ms"] > 0 and h["checkpoint_quiet_bytes"] > 0
    assert h["seek_back_0.1M_s"] > 0 and h["seek_back_1M_s"] > 0
    assert "history (bigmem)" in describe(h) and REPEAT >= 1
