"""Segment registers: descriptor tables, the hidden descriptor cache, and the
checks made when a selector is loaded (SDM vol. 3, chapter 5; MOV Sreg).

Invariants of the cache kept on the CPU (``seg_sel/base/limit/attr`` and the
derived bounds ``seg_lo``, ``seg_hi`` (reads), ``seg_whi`` (writes)):
- an offset ``off`` may be read iff ``seg_lo <= off <= seg_hi`` and written iff
  ``seg_lo <= off <= seg_whi``; an unusable segment (null selector in protected
  mode, execute-only code for reads, read-only data for writes) has -1 as the
  upper bound, so every access faults.
- real mode loads change only selector and base (limit and attributes stay,
  which is how "unreal mode" works on real processors).
- virtual-8086 mode (EFLAGS.VM, with CR0.PE set) loads every segment
  register, CS included, without descriptors: base = selector * 16, limit
  0xFFFF and the attributes ``VM86_ATTR`` (a present, DPL-3, writable
  16-bit data segment, as VMX requires of VM86 guest state).  So code and
  stack are 16-bit (``cpu.code32``/``cpu.stack32`` false) and ``cpu.flat``
  is false there (``load_vm86``; IRET and task switches enter through it).
"""

from __future__ import annotations

from .consts import (CS, DESC_CODE, DESC_CONFORMING, DESC_EXPDOWN, DESC_P, DESC_RW, DESC_S, GP, NP,
                     SS, SS_SEG, VM)
from .errors import CpuFault

ATTR_G = 1 << 15
ATTR_DB = 1 << 14
VM86_ATTR = 0xF3    # present, DPL 3, data, read/write, accessed; 16-bit, byte-granular


def desc_base(lo: int, hi: int) -> int:
    return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


def desc_limit(lo: int, hi: int) -> int:
    limit = (lo & 0xFFFF) | (hi & 0x000F0000)
    if hi & (1 << 23):
        limit = (limit << 12) | 0xFFF
    return limit


def desc_attr(hi: int) -> int:
    """Access byte in bits 0-7, AVL/L/D-B/G in bits 12-15 (as in the descriptor)."""
    return (hi >> 8) & 0xF0FF


def dpl(attr: int) -> int:
    return (attr >> 5) & 3


def set_cache(cpu, seg: int, sel: int, base: int, limit: int, attr: int) -> None:
    cpu.seg_sel[seg] = sel
    cpu.seg_base[seg] = base
    cpu.seg_limit[seg] = limit
    cpu.seg_attr[seg] = attr
    _bounds(cpu, seg)


def _bounds(cpu, seg: int) -> None:
    attr = cpu.seg_attr[seg]
    limit = cpu.seg_limit[seg]
    key = (attr, limit, cpu.protected, seg == CS)
    b = _BOUNDS.get(key)
    if b is None:
        if len(_BOUNDS) >= MEMO_MAX:
            _BOUNDS.clear()
        b = _BOUNDS[key] = _compute_bounds(attr, limit, cpu.protected, seg == CS)
    cpu.seg_lo[seg], cpu.seg_hi[seg], cpu.seg_whi[seg], full = b
    if seg == CS:
        cpu.code32 = bool(attr & ATTR_DB)
    elif seg == SS_SEG:
        cpu.stack32 = bool(attr & ATTR_DB)
    if seg <= 3:
        if full and not cpu.seg_base[seg]:
            cpu.nonflat &= ~(1 << seg)
        else:
            cpu.nonflat |= 1 << seg
        cpu.flat = cpu.code32 and cpu.stack32 and not cpu.nonflat


# Memos of pure functions of a descriptor (segment loads are hot: a system
# call through xv6's trap path loads six); cleared when they grow past this.
MEMO_MAX = 4096
_BOUNDS: dict[tuple, tuple[int, int, int, bool]] = {}
_PARSED: dict[tuple[int, int], tuple[int, int, int]] = {}


def _compute_bounds(attr: int, limit: int, protected: bool, is_cs: bool) -> tuple[int, int, int, bool]:
    """(lo, hi, whi, full) for a cache entry (see the module docstring);
    ``full``: every offset readable, and writable unless this is CS."""
    lo, hi, whi = _limits(attr, limit, protected, is_cs)
    return lo, hi, whi, lo == 0 and hi == _FULL and (is_cs or whi == _FULL)


def _limits(attr: int, limit: int, protected: bool, is_cs: bool) -> tuple[int, int, int]:
    top = 0xFFFFFFFF if attr & ATTR_DB else 0xFFFF
    if not attr & DESC_P and protected:
        return 0, -1, -1
    if attr & DESC_S and not attr & DESC_CODE and attr & DESC_EXPDOWN:
        return limit + 1, top, (top if attr & DESC_RW else -1)
    hi = limit
    if attr & DESC_CODE:
        whi = -1 if protected else hi      # real mode: every segment is writable
        if not attr & DESC_RW and protected and not is_cs:
            # Execute-only code is unreadable through DS/ES/FS/GS.  CS keeps
            # its limit as the read bound because fetch and branch checks
            # use it (so CS-override reads of execute-only code are
            # allowed: a documented simplification).
            hi = -1
    else:
        whi = hi if (attr & DESC_RW or not protected) else -1
    return 0, hi, whi


def parse(lo: int, hi: int) -> tuple[int, int, int]:
    """(base, limit, attr) of the descriptor whose dwords are ``lo``, ``hi``."""
    p = _PARSED.get((lo, hi))
    if p is None:
        if len(_PARSED) >= MEMO_MAX:
            _PARSED.clear()
        p = _PARSED[(lo, hi)] = (desc_base(lo, hi), desc_limit(lo, hi), desc_attr(hi))
    return p


_FULL = 0xFFFFFFFF


def _flat(cpu) -> None:
    """``cpu.flat``: ES, CS, SS and DS are flat 32-bit segments (base 0,
    every offset readable, and writable for ES, SS and DS), so translated
    code may use offsets as linear addresses (see translate.py).  ``_bounds``
    keeps it current incrementally through ``cpu.nonflat`` (bit n: segment n
    is not flat); this is the definition it must agree with."""
    b, lo, hi, whi = cpu.seg_base, cpu.seg_lo, cpu.seg_hi, cpu.seg_whi
    cpu.flat = (cpu.code32 and cpu.stack32 and not (b[0] | b[1] | b[2] | b[3] | lo[0] | lo[1] | lo[2] | lo[3])
                and hi[0] == hi[1] == hi[2] == hi[3] == _FULL and whi[0] == whi[2] == whi[3] == _FULL)


def refresh_bounds(cpu) -> None:
    for s in range(6):
        _bounds(cpu, s)


def load_real(cpu, seg: int, sel: int) -> None:
    """Real-mode (or CR0.PE=0) load: base = selector * 16."""
    cpu.seg_sel[seg] = sel & 0xFFFF
    cpu.seg_base[seg] = (sel & 0xFFFF) << 4
    if seg == CS:
        # the code segment is always a usable, readable segment in real mode
        cpu.seg_attr[seg] |= DESC_P | DESC_S
    _bounds(cpu, seg)


def load_vm86(cpu, seg: int, sel: int) -> None:
    """Virtual-8086-mode load of any segment register (CS included): base =
    selector * 16, limit 0xFFFF, ``VM86_ATTR``; no descriptor is read and
    nothing can fault (SDM vol. 3, 20.1.1)."""
    sel &= 0xFFFF
    set_cache(cpu, seg, sel, sel << 4, 0xFFFF, VM86_ATTR)


def enter_vm86_segments(cpu, sels) -> None:
    """Load all six segment registers VM86-style from ``sels`` (selectors in
    ES, CS, SS, DS, FS, GS order) and make CPL 3: what IRET to VM86 and a
    task switch to a TSS whose EFLAGS image has VM set do once EFLAGS.VM is
    1 (the caller sets EFLAGS and EIP/ESP)."""
    for seg, sel in enumerate(sels):
        load_vm86(cpu, seg, sel)
    cpu.set_cpl(3)


def load_plain(cpu, seg: int, sel: int) -> None:
    """A load without descriptors: VM86 style with EFLAGS.VM, else real mode
    (far JMP/CALL/RET and IRET outside protected mode proper)."""
    if cpu.eflags & VM:
        load_vm86(cpu, seg, sel)
    else:
        load_real(cpu, seg, sel)


def read_descriptor(cpu, sel: int, vector: int = GP) -> tuple[int, int, int]:
    """Return ``(lo, hi, linear address)`` of the descriptor ``sel`` names."""
    index = sel & 0xFFF8
    if sel & 4:
        base, limit = cpu.ldtr_base, cpu.ldtr_limit
        if not cpu.ldtr_sel & 0xFFFC:
            raise CpuFault(vector, sel & 0xFFFC)
    else:
        base, limit = cpu.gdtr_base, cpu.gdtr_limit
    if index + 7 > limit:
        raise CpuFault(vector, sel & 0xFFFC)
    addr = (base + index) & 0xFFFFFFFF
    lo, hi = cpu.sys_read_pair(addr)
    return lo, hi, addr


def set_accessed(cpu, addr: int, hi: int) -> int:
    if not (hi >> 8) & 1:
        hi |= 1 << 8
        cpu.sys_write(addr + 4, 4, hi)
    return hi


# Protected-mode data-segment loads that passed their checks, keyed by
# (descriptor dwords, selector, CPL): the hidden-cache values to install.
# Only descriptors whose accessed bit is already set are kept, so a hit has
# no store to make; the descriptor is still read at every load (the guest
# may change its tables at any time).  A trap path loads four or six data
# segments (xv6's alltraps and trapret), so this is hot.
_DATA_LOADS: dict[tuple[int, int, int, int], tuple] = {}


def load_data(cpu, seg: int, sel: int) -> None:
    """MOV/POP/LDS into DS, ES, FS or GS."""
    if not cpu.protected:
        load_real(cpu, seg, sel)
        return
    if cpu.eflags & VM:
        load_vm86(cpu, seg, sel)
        return
    if not sel & 0xFFFC:
        set_cache(cpu, seg, sel, 0, 0, 0)
        return
    lo, hi, addr = read_descriptor(cpu, sel)
    key = (lo, hi, sel, cpu.cpl)
    hit = _DATA_LOADS.get(key)
    if hit is not None:
        _install_data(cpu, seg, sel, hit)
        return
    attr = desc_attr(hi)
    err = sel & 0xFFFC
    if not attr & DESC_S or (attr & DESC_CODE and not attr & DESC_RW):
        raise CpuFault(GP, err)
    if not (attr & DESC_CODE and attr & DESC_CONFORMING):
        if dpl(attr) < max(cpu.cpl, sel & 3):
            raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(NP, err)
    accessed = (hi >> 8) & 1
    hi = set_accessed(cpu, addr, hi)
    set_cache(cpu, seg, sel, *parse(lo, hi))
    if accessed:
        if len(_DATA_LOADS) >= MEMO_MAX:
            _DATA_LOADS.clear()
        _DATA_LOADS[key] = (cpu.seg_base[seg], cpu.seg_limit[seg], cpu.seg_attr[seg],
                            cpu.seg_lo[seg], cpu.seg_hi[seg], cpu.seg_whi[seg])


def _install_data(cpu, seg: int, sel: int, hit: tuple) -> None:
    """``set_cache`` of a data segment (not CS or SS) in protected mode, from
    values it computed before for the same descriptor (``_DATA_LOADS``)."""
    base, limit, attr, lo, hi, whi = hit
    cpu.seg_sel[seg] = sel
    cpu.seg_base[seg] = base
    cpu.seg_limit[seg] = limit
    cpu.seg_attr[seg] = attr
    cpu.seg_lo[seg] = lo
    cpu.seg_hi[seg] = hi
    cpu.seg_whi[seg] = whi
    if seg <= 3:
        if not base and not lo and hi == whi == _FULL:
            cpu.nonflat &= ~(1 << seg)
        else:
            cpu.nonflat |= 1 << seg
        cpu.flat = cpu.code32 and cpu.stack32 and not cpu.nonflat


def load_ss(cpu, sel: int, cpl: int | None = None) -> None:
    """MOV/POP/LSS into SS (and the stack switch of a privilege change)."""
    if not cpu.protected:
        load_real(cpu, SS_SEG, sel)
        return
    if cpu.eflags & VM:
        load_vm86(cpu, SS_SEG, sel)
        return
    cpl = cpu.cpl if cpl is None else cpl
    if not sel & 0xFFFC:
        raise CpuFault(GP, 0)
    lo, hi, addr = read_descriptor(cpu, sel)
    attr = desc_attr(hi)
    err = sel & 0xFFFC
    if (sel & 3) != cpl or dpl(attr) != cpl or not attr & DESC_S or attr & DESC_CODE \
            or not attr & DESC_RW:
        raise CpuFault(GP, err)
    if not attr & DESC_P:
        raise CpuFault(SS, err)
    hi = set_accessed(cpu, addr, hi)
    set_cache(cpu, SS_SEG, sel, *parse(lo, hi))


def commit_ss(cpu, sel: int, lo: int, hi: int, addr: int) -> None:
    """Commit a stack segment descriptor the caller read and checked (the
    stack switch of INT and of IRET to an outer ring): the descriptor is read
    once, as the processor loads it into the hidden cache at its check."""
    hi = set_accessed(cpu, addr, hi)
    set_cache(cpu, SS_SEG, sel, *parse(lo, hi))


def load_cs(cpu, sel: int, lo: int, hi: int, addr: int, cpl: int) -> None:
    """Commit an already-checked code segment descriptor; CPL becomes ``cpl``."""
    hi = set_accessed(cpu, addr, hi)
    set_cache(cpu, CS, (sel & 0xFFFC) | cpl, *parse(lo, hi))
    cpu.set_cpl(cpl)


def load(cpu, seg: int, sel: int) -> None:
    """Load any segment register but CS (MOV Sreg, POP Sreg, LxS)."""
    if seg == SS_SEG:
        load_ss(cpu, sel)
    else:
        load_data(cpu, seg, sel)


def revalidate_data_segments(cpu) -> None:
    """After a return to an outer ring: null any data segment the new CPL may
    not use (SDM vol. 3, RET/IRET: "checks ES, DS, FS, GS")."""
    for seg in (0, 3, 4, 5):
        attr = cpu.seg_attr[seg]
        if not cpu.seg_sel[seg] & 0xFFFC:
            continue
        if attr & DESC_CODE and attr & DESC_CONFORMING:
            continue
        if dpl(attr) < cpu.cpl:
            set_cache(cpu, seg, 0, 0, 0, 0)
