"""The target description gdb reads with ``qXfer:features:read``.

gdb's i386 support requires the feature ``org.gnu.gdb.i386.core`` with all
32 core registers (16 integer registers, st0-st7 and the 8 x87 control
registers) by those names; the x87 ones are the processor's (``target.py``
``_x87_value``), and writable.
``<osabi>none</osabi>`` avoids a gdb 13 internal error.  The system
registers (control registers as the guest sees them, descriptor-table
registers, TR, LDTR and the monitor's real CR3 into the shadow) are a
feature of our own, reached with ``p``/``P`` by number.
"""

from __future__ import annotations

from .target import CORE, SYSTEM, X87

_TYPES = {"eip": "code_ptr", "esp": "data_ptr", "ebp": "data_ptr", "eflags": "i386_eflags"}

_EFLAGS = """  <flags id="i386_eflags" size="4">
    <field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
    <field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
    <field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
    <field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
    <field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
    <field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
    <field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
    <field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
    <field name="ID" start="21" end="21"/>
  </flags>
"""


def target_xml() -> str:
    regs = []
    n = 0
    for name in CORE:
        regs.append(f'  <reg name="{name}" bitsize="32" type="{_TYPES.get(name, "int32")}" regnum="{n}"/>')
        n += 1
    for name in X87:
        if name.startswith("st"):
            regs.append(f'  <reg name="{name}" bitsize="80" type="i387_ext" regnum="{n}"/>')
        else:
            regs.append(f'  <reg name="{name}" bitsize="32" type="int" group="float" regnum="{n}"/>')
        n += 1
    system = []
    for name in SYSTEM:
        system.append(f'  <reg name="{name}" bitsize="32" type="{"data_ptr" if "base" in name else "int32"}" '
                      f'group="system" regnum="{n}"/>')
        n += 1
    return ('<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target version="1.0">\n'
            "<architecture>i386</architecture>\n<osabi>none</osabi>\n"
            '<feature name="org.gnu.gdb.i386.core">\n' + _EFLAGS + "\n".join(regs) + "\n</feature>\n"
            '<feature name="org.tvmm.system">\n' + "\n".join(system) + "\n</feature>\n</target>\n")
