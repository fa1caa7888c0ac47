"""Reference engine for differential testing: run a ``Snippet`` on unicorn.

``run_unicorn(snippet) -> Outcome`` sets up the memory layout of
``snippet.py`` (code, data and stack pages only; nothing else is mapped), the
initial register file, and runs until EIP reaches ``CODE_BASE + len(code)``,
an exception, or ``MAX_STEPS`` instructions.

Mode set-up:
  * 32: ``UC_MODE_32`` -- unicorn starts with CR0.PE=1, CS/SS 32-bit, every
    segment base 0 (flat), paging off, CPL 0.
  * 16: ``UC_MODE_16`` -- real mode, every segment register (and base) 0.

Exceptions (no handler ever runs):
  * CPU exceptions and software interrupts arrive through ``UC_HOOK_INTR``;
    the vector is recorded and emulation stopped.  Unicorn leaves EIP at the
    faulting instruction for faults (#DE, #BR, ...) and after the instruction
    for traps / software interrupts (int3, into, int n), which is exactly the
    contract; the self-check tests pin this down.
  * ``UC_ERR_INSN_INVALID`` -> vector 6 (#UD), EIP of the instruction.
  * unmapped memory (read/write/fetch) -> vector 14 in 32-bit mode, 13 in
    16-bit mode (see snippet.py / README.md), EIP of the instruction.

Unicorn work-arounds (see README.md):
  * ``IDIV r/m32`` with EDX:EAX = 0x8000000000000000 and divisor -1 kills the
    *host* process with SIGFPE (QEMU's helper_idivl does the division in C
    before checking the quotient range).  A code hook on every 32-bit IDIV
    checks the operands first and reports the architecturally correct #DE.
"""

from __future__ import annotations

import capstone
from capstone import x86_const as cx
from unicorn import (UC_ARCH_X86, UC_ERR_FETCH_UNMAPPED, UC_ERR_INSN_INVALID,
                     UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED,
                     UC_HOOK_CODE, UC_HOOK_INTR, UC_MODE_16, UC_MODE_32, Uc,
                     UcError)
from unicorn import x86_const as ux

from .snippet import (CODE_BASE, DATA_BASE, GPRS, MAX_STEPS, PAGE, STACK_BASE,
                     STACK_TOP, Outcome, Snippet)

VEC_DE, VEC_UD = 0, 6
UNMAPPED_VECTOR = {32: 14, 16: 13}

UC_REG = {
    "eax": ux.UC_X86_REG_EAX, "ecx": ux.UC_X86_REG_ECX,
    "edx": ux.UC_X86_REG_EDX, "ebx": ux.UC_X86_REG_EBX,
    "esp": ux.UC_X86_REG_ESP, "ebp": ux.UC_X86_REG_EBP,
    "esi": ux.UC_X86_REG_ESI, "edi": ux.UC_X86_REG_EDI,
    "eip": ux.UC_X86_REG_EIP, "eflags": ux.UC_X86_REG_EFLAGS,
}
SEGS = (ux.UC_X86_REG_CS, ux.UC_X86_REG_DS, ux.UC_X86_REG_ES,
        ux.UC_X86_REG_SS, ux.UC_X86_REG_FS, ux.UC_X86_REG_GS)
_UNMAPPED = (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED)


class OracleError(RuntimeError):
    """The harness itself failed (not an emulated CPU exception)."""


_CS = {}


def disassembler(mode: int) -> capstone.Cs:
    if mode not in _CS:
        md = capstone.Cs(capstone.CS_ARCH_X86,
                         capstone.CS_MODE_32 if mode == 32 else capstone.CS_MODE_16)
        md.detail = True
        _CS[mode] = md
    return _CS[mode]


def _idiv32_sites(snippet: Snippet):
    """Addresses of ``IDIV r/m32`` instructions in a linear sweep of the code."""
    md = disassembler(snippet.mode)
    sites = []
    for insn in md.disasm(snippet.code, CODE_BASE):
        if insn.id == cx.X86_INS_IDIV and insn.operands and insn.operands[0].size == 4:
            sites.append(insn.address)
    return sites


def _operand_value(uc: Uc, insn, mode: int) -> int | None:
    op = insn.operands[0]
    if op.type == cx.X86_OP_REG:
        name = insn.reg_name(op.reg)
        return uc.reg_read(UC_REG[name]) if name in UC_REG else None
    if op.type == cx.X86_OP_MEM:
        m = op.mem
        ea = m.disp
        if m.base:
            ea += uc.reg_read(_cs_reg(insn, m.base))
        if m.index:
            ea += uc.reg_read(_cs_reg(insn, m.index)) * m.scale
        ea &= 0xFFFF if insn.addr_size == 2 else 0xFFFFFFFF
        try:
            return int.from_bytes(uc.mem_read(ea, 4), "little")
        except UcError:
            return None       # let unicorn raise the access fault itself
    return None


def _cs_reg(insn, reg) -> int:
    name = insn.reg_name(reg)
    table = {"ax": "eax", "cx": "ecx", "dx": "edx", "bx": "ebx", "sp": "esp",
             "bp": "ebp", "si": "esi", "di": "edi"}
    return UC_REG[table.get(name, name)]


def run_unicorn(snippet: Snippet) -> Outcome:
    mode = snippet.mode
    if mode not in (16, 32):
        raise OracleError(f"bad mode {mode}")
    if len(snippet.code) > PAGE:
        raise OracleError("code larger than a page")
    if len(snippet.data) != PAGE:
        raise OracleError("data must be exactly one page")

    uc = Uc(UC_ARCH_X86, UC_MODE_32 if mode == 32 else UC_MODE_16)
    for base in (CODE_BASE, DATA_BASE, STACK_BASE):
        uc.mem_map(base, PAGE)
    uc.mem_write(CODE_BASE, bytes(snippet.code))
    uc.mem_write(DATA_BASE, bytes(snippet.data))

    if mode == 16:
        for seg in SEGS:
            uc.reg_write(seg, 0)
    regs = {r: 0 for r in GPRS}
    regs["esp"] = STACK_TOP
    regs.update({k: v for k, v in snippet.regs.items() if k in GPRS})
    for r in GPRS:
        uc.reg_write(UC_REG[r], regs[r] & 0xFFFFFFFF)
    uc.reg_write(UC_REG["eflags"], (snippet.regs.get("eflags", 0x2) | 0x2) & 0xFFFFFFFF)

    state = {"vector": None, "eip": None}

    def on_intr(uc, intno, _user):
        state["vector"] = intno
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)

    if 0xF7 in snippet.code:
        for site in _idiv32_sites(snippet):
            def on_idiv(uc, address, size, _user, _site=site):
                insn = next(disassembler(mode).disasm(
                    bytes(uc.mem_read(address, size)), address), None)
                if insn is None:
                    return
                edx = uc.reg_read(ux.UC_X86_REG_EDX)
                eax = uc.reg_read(ux.UC_X86_REG_EAX)
                div = _operand_value(uc, insn, mode)
                if edx == 0x80000000 and eax == 0 and div == 0xFFFFFFFF:
                    state["vector"] = VEC_DE
                    state["eip"] = address
                    uc.emu_stop()
            uc.hook_add(UC_HOOK_CODE, on_idiv, None, site, site)

    end = CODE_BASE + len(snippet.code)
    err = None
    try:
        uc.emu_start(CODE_BASE, end, count=MAX_STEPS)
    except UcError as e:
        err = e

    vector = state["vector"]
    if err is not None:
        if err.errno == UC_ERR_INSN_INVALID:
            vector = VEC_UD
        elif err.errno in _UNMAPPED:
            vector = UNMAPPED_VECTOR[mode]
        else:
            raise OracleError(f"unicorn error {err} on {snippet.label!r} "
                              f"code={snippet.code.hex()}") from err

    out = {r: uc.reg_read(UC_REG[r]) & 0xFFFFFFFF for r in GPRS}
    out["eip"] = uc.reg_read(UC_REG["eip"]) & 0xFFFFFFFF
    if state["eip"] is not None:
        out["eip"] = state["eip"]
    out["eflags"] = uc.reg_read(UC_REG["eflags"]) & 0xFFFFFFFF
    return Outcome(regs=out,
                   data=bytes(uc.mem_read(DATA_BASE, PAGE)),
                   stack=bytes(uc.mem_read(STACK_BASE, PAGE)),
                   exception=vector,
                   extra={"engine": "unicorn", "fpu": fpu_state(uc)})


def fpu_state(uc: Uc) -> dict:
    """The x87 state: physical registers R0-R7 as 80-bit ints (unicorn's
    FP0..FP7 read as (significand, sign|exponent)), FCW, FSW (TOP included)
    and the full tag word."""
    regs = []
    for i in range(8):
        sig, se = uc.reg_read(ux.UC_X86_REG_FP0 + i)
        regs.append(((se & 0xFFFF) << 64) | (sig & ((1 << 64) - 1)))
    return {"regs": regs, "cw": uc.reg_read(ux.UC_X86_REG_FPCW) & 0xFFFF,
            "sw": uc.reg_read(ux.UC_X86_REG_FPSW) & 0xFFFF, "tag": uc.reg_read(ux.UC_X86_REG_FPTAG) & 0xFFFF}
