"""The kernel workloads of ``tvmm bench`` (samples/kbench, tvmm/bench/kernels.py)
compute what their C says: each kernel runs with a small ``n=`` on its command
line, on the bare PC and as a guest under the monitor, and its ``bench_result``
(and, where the workload leaves something to look at, guest memory) is checked
against a Python model of samples/kbench/*.c written here.  Unicorn, where it
can run the kernel, must agree too (tvmm/bench/unicorn_ref.py)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from tvmm.bench import kernels as K

M32 = 0xFFFFFFFF
PGSIZE = 4096
POOL_START, POOL_END = 4 << 20, 8 << 20      # kalloc's pages (kbench.h)
POOL_PAGES = (POOL_END - POOL_START) // PGSIZE
PHYSTOP = 224 << 20
KPDES = PHYSTOP >> 22                         # 56 page tables map 0..PHYSTOP
KERNEL_PAGES = 1 + KPDES + 1                  # kvmalloc: kpgdir, its tables, the local APIC's table


# ------------------------------------------------------------------ models
def model_lock(n):
    """lock.c: count++ then sum += i ^ count, under the lock."""
    s = 0
    for i in range(n):
        s = (s + (i ^ (i + 1))) & M32
    return s


class Kalloc:
    """common.c's kalloc free list: kinit pushes POOL_END-PGSIZE down to
    POOL_START, so the head is POOL_START; kalloc pops, kfree pushes."""

    def __init__(self):
        self.free = list(range(POOL_END - PGSIZE, POOL_START - 1, -PGSIZE))

    def kalloc(self):
        return self.free.pop()

    def kfree(self, p):
        self.free.append(p)


def model_mappages(n):
    """mappages.c after kvmalloc: the last page directory's address and its
    page tables (PDE 512 + k -> table k)."""
    k = Kalloc()
    k.kalloc()                                 # kvmalloc: kpgdir,
    for _ in range(KPDES + 1):                 # its 56 tables and the local APIC's
        k.kalloc()
    pgdir, tables = 0, []
    for _ in range(n):
        if pgdir:
            for t in tables:                   # freevm: tables in PDE order, then the directory
                k.kfree(t)
            k.kfree(pgdir)
        pgdir = k.kalloc()
        tables = [k.kalloc() for _ in range(KPDES)]
    return pgdir, tables


def model_fork(n):
    """fork.c: source page i holds word j = (i << 16) ^ (j * 2654435761); each
    round r copies all 64 and reads word (i*17 + r) & 1023 of copy i."""
    s = 0
    for r in range(n):
        for i in range(64):
            j = (i * 17 + r) & 1023
            s = (s + ((i << 16) ^ ((j * 2654435761) & M32))) & M32
    return s


def model_syscall(n):
    """syscall.c: sum = add(i, sum) = 3*sum + i; every fourth also ^= getpid() (7)."""
    s = 0
    for i in range(n):
        s = (3 * s + i) & M32
        if i & 3 == 0:
            s ^= 7
    return s


WORDS = ["acquire", "release", "pushcli", "popcli", "mycpu", "kalloc", "kfree", "mappages",
         "walkpgdir", "copyuvm", "freevm", "memmove", "sched", "yield", "sleep", "wakeup"]


def model_calls(n):
    """calls.c, both builds."""
    NN, NAMELEN = 48, 16

    def mix(a, b):
        return ((a ^ ((b << 5) & M32)) + (b >> 3)) & M32

    def strncmp(p, q, k):
        p, q = p.encode() + b"\0", q.encode() + b"\0"
        i = 0
        while k > 0 and p[i] and p[i] == q[i]:
            k, i = k - 1, i + 1
        return 0 if k == 0 else p[i] - q[i]

    def memcmp(a, b):
        for x, y in zip(a, b):
            if x != y:
                return x - y
        return 0

    def fib(k):
        return k if k < 2 else fib(k - 1) + fib(k - 2)

    buf = bytes((i * 7 + 3) & 0xFF for i in range(256))
    h = 2166136261
    for b in buf:                                      # FNV-1a
        h = ((h ^ b) * 16777619) & M32
    key = list(range(NN))
    val = [((i * 2654435761) & M32) ^ 0x5BD1E995 for i in range(NN)]
    name = [WORDS[i % 16] + chr(ord("a") + i // 16) for i in range(NN)]
    order = [(k * 7) % NN for k in range(NN)]          # the list: 0, 7, 14, ...
    assert sorted(order) == key
    s = 0
    for r in range(n):
        s = mix(s, h ^ r)
        ls = 0
        for i in order:
            ls = mix(ls, val[i])
        s = mix(s, ls)
        s = mix(s, val[next(i for i in order if key[i] == (r * 5) % NN)])
        for w in range(16):
            s = mix(s, len(WORDS[w]))
            q = WORDS[w] + chr(ord("a") + r % 3)
            found = next((key[i] for i in order if strncmp(name[i], q, NAMELEN) == 0), -1)
            s = mix(s, found & M32)
            s = mix(s, strncmp(WORDS[w], WORDS[(w + 1) % 16], 3) & M32)
        a, b = r & 63, (r * 3) & 63
        s = mix(s, memcmp(buf[a:a + 32], buf[b:b + 32]) & M32)
        s = mix(s, fib(10 + (r & 1)))
    return s


# Small iteration counts: a few seconds a run, most of it the (untimed) boot,
# whose kvmalloc maps 224 MiB with 4 KiB pages.  mappages and fork need n >= 2
# to free and reallocate; n for syscall is not a multiple of 4; calls covers
# every r % 3 and r & 1.
N = {"lock": 300, "mappages": 3, "fork": 3, "syscall": 401, "calls-O2": 12, "calls-O0": 12}
MODEL = {"lock": model_lock, "mappages": lambda n: model_mappages(n)[0], "fork": model_fork,
         "syscall": model_syscall, "calls-O2": model_calls, "calls-O0": model_calls}
# pages the workload leaves allocated after its run (besides kvmalloc's)
KEPT = {"lock": 0, "mappages": 1 + KPDES, "fork": 1 + 1 + 64, "syscall": 0, "calls-O2": 0, "calls-O0": 0}


def test_models_agree_with_hand_computed_values():
    assert model_lock(4) == (0 ^ 1) + (1 ^ 2) + (2 ^ 3) + (3 ^ 4)
    assert model_syscall(2) == ((0 ^ 7) * 3 + 1)
    assert model_fork(1) == sum((i << 16) ^ ((17 * i % 1024) * 2654435761 & M32) for i in range(64)) & M32
    pgdir, tables = model_mappages(1)
    assert pgdir == POOL_START + KERNEL_PAGES * PGSIZE and tables[0] == pgdir + PGSIZE
    assert model_mappages(2)[0] == pgdir and model_mappages(2)[1] == tables[::-1]


# ------------------------------------------------------------------- runs
def run(name, how):
    kw = K.by_name(name)
    fn = K.run_bare if how == "bare" else K.run_guest
    out = fn(kw, f"n={N[name]}", keep=True)
    mem = out["pc"].mem if how == "bare" else out["guest"].gmem
    return out, mem, K.symbols(kw)


def word(mem, addr):
    return mem.read(addr, 4)


def free_pages(mem, syms):
    """Walk kmem.freelist (struct {spinlock lock (52 bytes); int use_lock; run *freelist})."""
    n, p = 0, word(mem, syms["kmem"] + 56)
    while p:
        assert POOL_START <= p < POOL_END and p % PGSIZE == 0, hex(p)
        n, p = n + 1, word(mem, p)
        assert n <= POOL_PAGES
    return n


@pytest.mark.parametrize("how", ["bare", "guest"])
@pytest.mark.parametrize("name", [k.name for k in K.ALL])
def test_kernel_workload_computes_its_model(name, how):
    out, mem, syms = run(name, how)
    n = N[name]
    assert word(mem, syms["bench_iters"]) == n                 # the command line was read
    expected = MODEL[name](n)
    assert out["result"] == expected, (f"{name} n={n} {how}: bench_result {out['result']:#x}, "
                                       f"model {expected:#x}")
    assert out["instructions"] > 0
    # everything the workload allocated and freed went back to kalloc
    assert free_pages(mem, syms) == POOL_PAGES - KERNEL_PAGES - KEPT[name]
    if name == "lock":
        c = syms["counter"]                                # struct {spinlock (52 bytes); count; sum}
        assert word(mem, c + 52) == n and word(mem, c + 56) == expected
        assert word(mem, c) == 0 and word(mem, c + 8) == 0    # released: not locked, no cpu
        assert word(mem, syms["cpus"] + 4) == 0                # cpus[0].ncli back to 0
    elif name == "syscall":
        # proc = {pid, sz, nsyscalls, tf}: add n times, getpid every fourth, exit once
        assert word(mem, syms["proc"] + 8) == n + (n + 3) // 4 + 1
    elif name == "mappages":
        pgdir, tables = model_mappages(n)
        pd = struct.unpack("<1024I", mem.read_bytes(pgdir, PGSIZE))
        want = [0] * 1024
        for k, t in enumerate(tables):
            want[512 + k] = t | 7                              # P | W | U (walkpgdir)
        assert list(pd) == want
        for k, t in enumerate(tables):
            pt = struct.unpack("<1024I", mem.read_bytes(t, PGSIZE))
            base = k * 1024
            assert pt == tuple(((base + j) << 12) | 3 for j in range(1024)), f"page table {k} at {t:#x}"


unicorn_kernels = [k.name for k in K.ALL if k.unicorn]


@pytest.mark.parametrize("name", unicorn_kernels)
def test_unicorn_computes_the_same(name):
    pytest.importorskip("unicorn")
    from tvmm.bench import unicorn_ref
    ref = unicorn_ref.run_kernel(name, f"n={N[name]}")
    expected = MODEL[name](N[name])
    assert ref["result"] == expected, f"{name} n={N[name]} unicorn: {ref['result']:#x}, model {expected:#x}"
    assert ref["console"] == ""


def test_unicorn_is_not_asked_for_the_syscall_kernel():
    # unicorn hands `int n` to hooks instead of delivering it through the IDT
    # (it stops with UC_ERR_EXCEPTION at the ring-3 `int $64`)
    assert unicorn_kernels == ["lock", "mappages", "fork", "calls-O2", "calls-O0"]


def test_bench_cli_kernel_workload_json():
    n = 40
    proc = subprocess.run([sys.executable, "-m", "tvmm", "bench", "--workload", "lock", "--no-history",
                           "--json", "--n", str(n)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "differs" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc["workloads"]) == {"lock"}
    fig = doc["workloads"]["lock"]
    assert fig["mips"] > 0 and fig["guest_mips"] > 0 and fig["guest_ratio"] > 0
    assert fig["result"] == model_lock(n) and "result_mismatch" not in fig
    assert "unicorn_mips" in fig
    try:
        import unicorn  # noqa: F401
    except ImportError:
        assert fig["unicorn_mips"] is None
    else:
        assert fig["unicorn_mips"] > 0


def test_bench_cli_rejects_a_bad_n():
    proc = subprocess.run([sys.executable, "-m", "tvmm", "bench", "--workload", "lock", "--n", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--n" in proc.stderr
