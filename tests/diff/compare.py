"""Run a snippet on both engines and explain any difference.

Compared: the eight GPRs, EIP, ``eflags & flags_mask & 0xFFF`` (bit 1 is set in
both engines), the data page, the stack page and the exception vector.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase

from .oracle import disassembler, run_unicorn
from .ours import run_ours
from .snippet import CODE_BASE, DATA_BASE, GPRS, STACK_BASE, Snippet

MULTIPLIER = max(1, int(os.environ.get("TVMM_DIFF_EXAMPLES", "1") or 1))

# Shared by every differential test (with max_examples, deadline=None and
# derandomize=True written out in each test).  No shrinking: an example is one
# seed expanded by gen.generate, so shrinking the seed gives an unrelated
# program; check() instead re-runs each instruction of a failing sequence alone.
COMMON_SETTINGS = dict(
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
    print_blob=False,
)

FLAG_NAMES = ((0x1, "CF"), (0x2, "bit1"), (0x4, "PF"), (0x10, "AF"), (0x40, "ZF"), (0x80, "SF"),
              (0x100, "TF"), (0x200, "IF"), (0x400, "DF"), (0x800, "OF"))
VECTOR_NAMES = {0: "#DE", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 13: "#GP", 14: "#PF"}


def disasm(snippet: Snippet) -> str:
    md = disassembler(snippet.mode)
    lines, end = [], 0
    for insn in md.disasm(snippet.code, CODE_BASE):
        lines.append(f"  {insn.address:#06x}: {insn.bytes.hex():<24} {insn.mnemonic} {insn.op_str}")
        end = insn.address + insn.size - CODE_BASE
    if end < len(snippet.code):
        lines.append(f"  {CODE_BASE + end:#06x}: {snippet.code[end:].hex()}  (capstone cannot decode)")
    return "\n".join(lines)


def _vec(v):
    return "none" if v is None else f"{v} ({VECTOR_NAMES.get(v, '?')})"


def differences(snippet: Snippet, ours, ref) -> list[str]:
    out = []
    if ours.exception != ref.exception:
        out.append(f"exception: tvmm {_vec(ours.exception)} != unicorn {_vec(ref.exception)}")
    for r in GPRS + ("eip",):
        a, b = ours.regs[r] & 0xFFFFFFFF, ref.regs[r] & 0xFFFFFFFF
        if a != b:
            out.append(f"{r}: tvmm {a:#010x} != unicorn {b:#010x}")
    mask = snippet.flags_mask & 0xFFF
    fa, fb = ours.regs["eflags"] & mask, ref.regs["eflags"] & mask
    if fa != fb:
        for bit, name in FLAG_NAMES:
            if (fa ^ fb) & bit:
                out.append(f"{name}: tvmm {int(bool(fa & bit))} != unicorn {int(bool(fb & bit))}")
        out.append(f"  (eflags tvmm {ours.regs['eflags']:#x}, unicorn {ref.regs['eflags']:#x}, "
                   f"compared mask {mask:#x})")
    out += fpu_differences(snippet, ours.extra.get("fpu"), ref.extra.get("fpu"))
    for name, base, a, b in (("data", DATA_BASE, ours.data, ref.data), ("stack", STACK_BASE, ours.stack, ref.stack)):
        if a != b:
            diffs = [i for i in range(len(a)) if a[i] != b[i]]
            shown = ", ".join(f"[{base + i:#06x}] tvmm {a[i]:02x} unicorn {b[i]:02x}" for i in diffs[:12])
            more = f" (+{len(diffs) - 12} more)" if len(diffs) > 12 else ""
            out.append(f"{name} page: {len(diffs)} byte(s) differ: {shown}{more}")
    return out


def fpu_differences(snippet: Snippet, a: dict | None, b: dict | None) -> list[str]:
    """x87 state, for snippets that ask for it (``snippet.fpu_compare``): FCW,
    FSW under ``snippet.sw_mask`` (condition codes the SDM leaves undefined
    cleared), the tag word, and every non-empty physical register as 80 bits
    (or, for a register in ``snippet.approx``, within ``snippet.approx_ulps``
    units in the last place: unicorn computes transcendentals in host double
    precision).  Normal values only: the J bit is implied by the ordinal."""
    if not getattr(snippet, "fpu_compare", False) or a is None or b is None:
        return []
    out = []
    if a["cw"] != b["cw"]:
        out.append(f"fcw: tvmm {a['cw']:#06x} != unicorn {b['cw']:#06x}")
    m = snippet.sw_mask
    if (a["sw"] ^ b["sw"]) & m:
        out.append(f"fsw: tvmm {a['sw']:#06x} != unicorn {b['sw']:#06x} (compared mask {m:#06x})")
    def empties(t):
        return [(t >> (2 * i)) & 3 == 3 for i in range(8)]
    low64 = getattr(snippet, "mmx_low64", False)
    if (empties(a["tag"]) != empties(b["tag"])) if low64 else a["tag"] != b["tag"]:
        out.append(f"ftw: tvmm {a['tag']:#06x} != unicorn {b['tag']:#06x}")
    approx = getattr(snippet, "approx", {})
    for i in range(8):
        if (a["tag"] >> (2 * i)) & 3 == 3:
            continue
        ra, rb = a["regs"][i], b["regs"][i]
        if low64:                       # unicorn leaves bits 64-79 (see gen_x87); tags: empty or not
            ra, rb = ra & ((1 << 64) - 1), rb & ((1 << 64) - 1)
        if ra == rb:
            continue
        ulps = approx.get(i)
        if ulps is not None and _close(ra, rb, ulps):
            continue
        out.append(f"R{i}: tvmm {ra:#022x} != unicorn {rb:#022x}")
    return out


def _close(a: int, b: int, ulps: int) -> bool:
    """Two finite 80-bit values of the same sign within ``ulps`` of 2^-63
    relative (their patterns are ordered like their magnitudes)."""
    if (a ^ b) >> 79 or (a >> 64) & 0x7FFF == 0x7FFF or (b >> 64) & 0x7FFF == 0x7FFF:
        return False

    def ordinal(x):                      # consecutive values -> consecutive integers
        return (((x >> 64) & 0x7FFF) << 63) | (x & ((1 << 63) - 1))
    return abs(ordinal(a) - ordinal(b)) <= ulps


def _run_ours(snippet):
    try:
        return run_ours(snippet), None
    except AssertionError as e:
        # tvmm internal error (e.g. a missing handler), or its interpreted and
        # translated runs disagree (run_ours checks both)
        return None, str(e).strip()


def describe(snippet: Snippet) -> str:
    regs = " ".join(f"{r}={snippet.regs.get(r, 0):#x}" for r in GPRS)
    return (f"{snippet.label}\n  mode {snippet.mode}, code {snippet.code.hex()}\n{disasm(snippet)}\n"
            f"  initial: {regs} eflags={snippet.regs.get('eflags', 2):#x} flags_mask&0xfff="
            f"{snippet.flags_mask & 0xFFF:#x}")


def _isolate(snippet: Snippet) -> str:
    """Re-run each top-level instruction alone from the same initial state."""
    parts = getattr(snippet, "parts", ())
    if len(parts) < 2:
        return ""
    for off, ln in parts:
        one = Snippet(mode=snippet.mode, code=snippet.code[off:off + ln], regs=snippet.regs, data=snippet.data,
                      flags_mask=snippet.flags_mask, label=snippet.label)
        ref = run_unicorn(one)
        ours, err = _run_ours(one)
        diffs = [f"tvmm failed: {err.splitlines()[0]}"] if err else differences(one, ours, ref)
        if diffs:
            return ("\nthe instruction alone (same initial state) already differs:\n"
                    f"  code {one.code.hex()}\n{disasm(one)}\n    " + "\n    ".join(diffs))
    return "\n(no single instruction differs alone: the difference needs the sequence)"


def check(snippet: Snippet) -> None:
    """Assert that tvmm and unicorn agree on ``snippet``."""
    ref = run_unicorn(snippet)
    ours, err = _run_ours(snippet)
    if err is not None:
        raise AssertionError(f"tvmm failed on\n{describe(snippet)}\n{err}")
    diffs = differences(snippet, ours, ref)
    if diffs:
        msg = (f"tvmm differs from unicorn on\n{describe(snippet)}\n  unicorn exception {_vec(ref.exception)}, "
               f"tvmm {ours.extra.get('stop', '')}\n  " + "\n  ".join(diffs))
        raise AssertionError(msg + _isolate(snippet))
