"""The decoder against its table and against capstone's idea of instruction length."""

from __future__ import annotations

import capstone
import pytest
from hypothesis import given, settings, strategies as st

import tvmm.machine  # noqa: F401  (registers handlers)
from tvmm.machine import registry
from tvmm.machine.decoder import NeedBytes, decode
from tvmm.machine.optable import GROUPS, ONE_BYTE, TWO_BYTE, X87


def _specs():
    for table in (ONE_BYTE, TWO_BYTE):
        for op, (mnem, spec, _flags) in table.items():
            if mnem == "ESC":                      # x87: the rows of optable.X87 for this opcode
                for key, (xm, xspec, _) in X87.items():
                    if key[0] == op:
                        yield op, xm, xspec
            elif mnem.startswith("GRP"):
                for row in GROUPS[mnem]:
                    if row is None:
                        continue
                    gm, gspec, _ = row
                    if gspec == "EI":
                        gspec = spec + (",Ib" if spec == "Eb" else ",Iz")
                    yield op, gm, spec if gspec is None else gspec
            else:
                yield op, mnem, spec


@pytest.mark.parametrize("op,mnem,spec", sorted(set(_specs())))
def test_every_table_row_has_a_handler(op, mnem, spec):
    h = registry.HANDLERS.get((mnem, spec))
    assert h is not None, f"opcode {op:#x}: no handler for {mnem} {spec}"
    sizes = h if isinstance(h, dict) else {0: h}
    for v in sizes.values():
        for f in (v if isinstance(v, tuple) else (v,)):
            assert callable(f)


def test_every_x87_modrm_decodes_to_a_handler_or_ud():
    """All 8 x 256 escape ModRM bytes: a registered handler, or #UD for the
    holes: 92 register forms (D9 D1-D7 E2 E3 E6 E7 EF, DA E0-E8 EA-FF, DB
    E5-E7 F8-FF, DD F0-FF, DE D8 DA-DF, DF E1-E7 F8-FF) and 7 memory forms
    x 24 ModRM bytes (D9 /1, DB /4 /6, DD /5 and FISTTP DB/DD/DF /1)."""
    n_ud = 0
    for op in range(0xD8, 0xE0):
        for modrm in range(256):
            d = decode(bytes([op, modrm]) + bytes(8), 0, True)
            assert d.fn is not registry._unimplemented, (hex(op), hex(modrm))
            n_ud += d.fn is registry.raise_ud
    assert decode(b"\xdb\x08" + bytes(8), 0, True).fn is registry.raise_ud          # FISTTP m32int: SSE3
    assert decode(b"\xd9\xd1" + bytes(8), 0, True).fn is registry.raise_ud
    assert n_ud == 92 + 7 * 24


def test_undefined_opcodes_decode_to_ud_not_an_error():
    for raw in (b"\x0f\xff", b"\x0f\x10\xc0", b"\xfe\xd0", b"\x8f\xc8", b"\x0f\xc7\xc8", b"\xc4\xc0"):
        d = decode(raw + bytes(16), 0, True)
        assert d.fn is registry.raise_ud, raw.hex()


def test_lock_on_non_lockable_is_ud():
    assert decode(b"\xf0\x89\xc0" + bytes(8), 0, True).fn is registry.raise_ud   # lock mov
    assert decode(b"\xf0\x01\xc0" + bytes(8), 0, True).fn is registry.raise_ud   # lock add reg,reg
    assert decode(b"\xf0\x01\x00" + bytes(8), 0, True).fn is not registry.raise_ud


def test_overlong_instruction_is_gp():
    d = decode(b"\x66" * 14 + b"\x05\x00\x00\x00\x00", 0, True)
    assert d.fn is registry.raise_gp0


def test_truncated_instruction_asks_for_more_bytes():
    with pytest.raises(NeedBytes):
        decode(b"\xb8\x01\x02", 0, True)


_CS32 = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
_CS16 = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.booleans())
def test_instruction_lengths_agree_with_capstone(raw, code32):
    d = decode(raw, 0, code32)
    if d.mnem == "(bad)" or d.mnem == "ESC":
        return
    cs = _CS32 if code32 else _CS16
    insns = list(cs.disasm(raw, 0, count=1))
    if not insns:
        return
    ins = insns[0]
    # capstone decodes some opcodes that are undefined on a Pentium Pro (SSE,
    # long NOPs with prefixes...); we only compare where we decoded too.
    assert d.len == ins.size, f"{raw[:ins.size].hex()}: ours {d.len} ({d.mnem} {d.spec}), capstone {ins.size} ({ins.mnemonic} {ins.op_str})"


@pytest.mark.parametrize("code32", [False, True])
@pytest.mark.parametrize("raw", ["0f2206", "0f2006", "0f2306", "0f2106"])
def test_mov_control_and_debug_registers_ignore_mod(raw, code32):
    """SDM vol. 2, MOV (control/debug registers): the mod bits are ignored and
    the operand is always a general register, so mod=00 r/m=110 (a disp16
    form elsewhere in 16-bit code) is three bytes (found by the capstone
    comparison above)."""
    d = decode(bytes.fromhex(raw) + bytes(13), 0, code32)
    assert d.len == 3 and d.rm == 6
