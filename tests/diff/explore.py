"""Run many generated snippets and list every difference (not just the first).

    python -m tests.diff.explore                      # 100 seeds per family/group/mode
    python -m tests.diff.explore -n 1000 -f alu,shift --start 12345 -j 2

The pytest suite stops a test at its first failing example; this explorer keeps
going, and groups failures by the first instruction that differs on its own,
which is the quickest way to see how many distinct bugs a change introduced.
Seeds are plain integers: ``check(gen.generate(seed, family, group, mode))``
reproduces one.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing

from . import gen
from .compare import check


def _job(args):
    family, group, mode, seeds = args
    fails = []
    for seed in seeds:
        try:
            check(gen.generate(seed, family, group, mode))
        except AssertionError as e:
            fails.append((seed, str(e)))
    return family, group, mode, len(seeds), fails


_REGS = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip"}


def _key(msg: str) -> str:
    """Coarse bucket: mnemonic of the first instruction that differs alone (+ segment
    override) and the kinds of state that differ."""
    lines = msg.splitlines()
    if msg.startswith("tvmm failed"):
        if "interpreted and translated runs differ" in msg:
            return "tvmm interpreted and translated runs differ"
        return "tvmm internal error: " + next((ln.strip() for ln in lines if "Unimplemented" in ln or "Error" in ln),
                                              lines[-1].strip())
    if "the instruction alone" in msg:
        i = next(i for i, ln in enumerate(lines) if "the instruction alone" in ln)
        text = lines[i + 2].strip().split(None, 2)[-1]
    else:
        insns = [ln for ln in lines if ln.startswith("  0x") and ": " in ln]
        if len(insns) != 1:
            return "sequence-only difference"
        text = insns[0].strip().split(None, 2)[-1]
        i = next(i for i, ln in enumerate(lines) if ln.strip().startswith("unicorn exception")) - 2
    mnem = text.split()[0] if not text.startswith(("lock", "rep")) else " ".join(text.split()[:2])
    seg = next((p for p in ("cs:", "ds:", "es:", "ss:", "fs:", "gs:") if p in text), "")
    kinds = set()
    for ln in lines[i + 3:]:
        field = ln.strip().split(":")[0]
        if field == "exception":
            kinds.add(ln.strip())
        elif field in _REGS:
            kinds.add("registers")
        elif field in ("data page", "stack page"):
            kinds.add("memory")
        elif field and field[0].isupper() or field == "bit1":
            kinds.add("flags")
    return f"{mnem} {seg}".strip() + " -> " + ", ".join(sorted(kinds))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100, help="seeds per family/group/mode")
    ap.add_argument("-f", "--families", default=",".join(gen.FAMILIES))
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("-j", type=int, default=2, help="worker processes")
    ap.add_argument("-v", action="store_true", help="print every failure message")
    args = ap.parse_args(argv)
    jobs = [(f, g, m, range(args.start, args.start + args.n))
            for f in args.families.split(",") for g in gen.groups(f) for m in (32, 16)]
    kinds = collections.defaultdict(list)
    total = failed = 0
    with multiprocessing.Pool(args.j) as pool:
        for family, group, mode, n, fails in pool.imap_unordered(_job, jobs):
            total += n
            failed += len(fails)
            print(f"{family}/{group} mode {mode}: {len(fails)}/{n} differ", flush=True)
            for seed, msg in fails:
                kinds[_key(msg)].append((family, group, mode, seed, msg))
                if args.v:
                    print(msg, "\n")
    print(f"\n{failed}/{total} snippets differ; by first differing instruction:")
    for k, v in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        family, group, mode, seed, msg = v[0]
        print(f"  {len(v):5d}  {k}\n         e.g. check(gen.generate({seed}, {family!r}, {group!r}, {mode}))")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
