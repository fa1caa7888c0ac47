"""Non-maskable interrupts (SDM vol. 3, 6.7.1, 10.5.1, 10.6.1): from the
local APIC's ICR (to self through the self shorthand, and by destination),
from LINT1 programmed as NMI (the chipset's NMI line, masked by port 0x70
bit 7), from an I/O APIC entry in NMI mode; taken whatever IF says; blocked
from its delivery to the next IRET (one more latched, then taken right
after that IRET; an IRET that faults unblocks too); held for one
instruction after MOV SS; saved in snapshots; logged by the monitor as its
own event kind.  Bare (a PC) and as a guest."""

from __future__ import annotations

import pytest

from tvmm.machine import apic
from tvmm.monitor import events as ev
from tvmm.monitor import snapshot

from .taskrig import APIC, CODE_A, CODE_H, IDT, K_CODE, RES, STACK_A, A, Rig, p32
from .harness import gate_desc

ICR_LO, SVR, LVT_LINT1 = APIC + 0x300, APIC + 0xF0, APIC + 0x360
NMI_SELF = (1 << 18) | (4 << 8) | (1 << 14)       # self shorthand, NMI, assert
LOGP, LOG, NMIS = RES + 0x100, RES + 0x200, RES + 0x104
H_NMI, H_DE, H_GP, H_OTHER = CODE_H, CODE_H + 0x100, CODE_H + 0x200, CODE_H + 0x300
MODES = ["bare", "monitor"]


def log(ch: str) -> bytes:
    """Append one character to the log at LOG (mov eax,[LOGP]; mov byte [eax],ch; inc dword [LOGP])."""
    return A.load(LOGP) + b"\xc6\x00" + ch.encode() + A.inc_mem(LOGP)


def logged(rig) -> str:
    n = rig.r32(LOGP) - LOG
    return rig.read(LOG, n).decode()


def cmp_jne(addr: int, value: int, skip: bytes) -> bytes:
    """cmp dword [addr], value; jne over ``skip``; skip."""
    return b"\x83\x3d" + p32(addr) + bytes([value]) + b"\x75" + bytes([len(skip)]) + skip


def kernel(rig, *, resend: bool = True, paging: bool = True) -> None:
    """IDT: NMI, #DE, and a recorder for everything else; the NMI handler
    sends one more NMI to itself the first time (it must wait for the IRET)."""
    if paging:
        rig.paging()
    rig.w32(LOGP, LOG)
    for v in range(32):
        rig.idt(v, gate_desc(K_CODE, H_OTHER + 16 * v, 0xE, 0))
        rig.code(H_OTHER + 16 * v, A.mov_eax(v), A.store(RES + 0x80), A.HLT)
    rig.idt(2, gate_desc(K_CODE, H_NMI, 0xE, 0))
    rig.idt(0, gate_desc(K_CODE, H_DE, 0xE, 0))
    again = A.store_imm(ICR_LO, NMI_SELF) + log("S") if resend else b""
    rig.code(H_NMI, log("E"), A.inc_mem(NMIS), cmp_jne(NMIS, 1, again), log("X"), A.IRET)
    rig.code(H_DE, log("Z"), b"\x83\x04\x24\x02", A.IRET)          # add dword [esp], 2: past the DIV


@pytest.fixture(params=MODES)
def rig(request, tmp_path):
    return Rig(request.param, tmp_path)


@pytest.mark.parametrize("flush", [False, True], ids=["", "flushed"])
def test_nmi_to_self_then_a_divide_error_both_handled_no_triple_fault(rig, flush):
    """The issue's scenario: an NMI to self through the ICR's self
    shorthand is delivered (and a second one, sent from its handler, waits
    for the IRET), then a #DE is handled and returned from.  ``flushed``:
    INVLPG of the IDT's and the stack's pages first (as kvm-unit-tests'
    eventinj does), so under the monitor both deliveries take hidden page
    faults on the IDT and the stack."""
    kernel(rig)
    invlpg = (b"\x0f\x01\x3d" + p32(IDT) + b"\x0f\x01\x3c\x24") if flush else b""   # invlpg [IDT]; [esp]
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), log("M"), invlpg, A.store_imm(ICR_LO, NMI_SELF), log("A"),
             A.XOR_ECX_ECX, A.mov_eax(1), invlpg, A.DIV_ECX, log("D"), A.HLT)
    rig.run(100_000)
    assert rig.crashed is None, rig.crashed
    assert logged(rig) == "MESXEXAZD"
    assert rig.r32(RES + 0x80) == 0 and rig.r32(NMIS) == 2
    assert not rig.cpu.nmi_blocked and not rig.cpu.nmi_pending
    if rig.monitor is not None:
        nmis = [e.detail for e in rig.kinds(ev.NMI_EVENT)]
        assert len(nmis) == 3 and nmis[0].startswith("delivered") and nmis[1].startswith("latched") \
            and nmis[2].startswith("delivered")
        assert not rig.kinds(ev.IRQ_INJECT)                           # an NMI is not an interrupt
        assert any(e.detail.startswith("vector 0 ") for e in rig.kinds(ev.GUEST_EXCEPTION))


def test_nmi_is_taken_with_interrupts_disabled_and_wakes_hlt(rig):
    kernel(rig, resend=False)
    rig.code(CODE_A, A.CLI, log("M"), A.store_imm(SVR, 0x1FF), A.store_imm(ICR_LO, NMI_SELF), log("A"), A.HLT)
    rig.run(10_000)
    assert logged(rig) == "MEXA"


def test_nmi_by_destination_apic_id(rig):
    kernel(rig, resend=False)
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), A.store_imm(APIC + 0x310, 0),      # ICR high: APIC ID 0
             A.store_imm(ICR_LO, (4 << 8) | (1 << 14)), log("A"), A.HLT)
    rig.run(10_000)
    assert logged(rig) == "EXA"


def test_lint1_programmed_as_nmi_takes_the_chipsets_nmi_and_port_70_bit_7_masks_it():
    rig = Rig("bare")
    kernel(rig, resend=False)
    rig.code(CODE_A, log("M"), A.HLT, log("W"), A.HLT)
    rig.run(1000)
    assert logged(rig) == "M" and rig.cpu.halted
    assert rig.pc.nmi() and not rig.cpu.nmi_pending                 # LINT1 still masked (reset state)
    lapic = rig.pc.lapic
    lapic.mmio_write(0xF0, 4, 0x1FF)
    lapic.mmio_write(0x360, 4, 0x400)                                # LINT1: NMI, unmasked
    rig.pc.bus.port_out(0x70, 1, 0x80)                               # NMI disabled at the chipset
    assert not rig.pc.nmi() and not rig.cpu.nmi_pending
    rig.pc.bus.port_out(0x70, 1, 0x00)
    assert rig.pc.nmi() and rig.cpu.nmi_pending
    rig.run(1000)
    assert logged(rig) == "MEXW"
    lapic.mmio_write(0x360, 4, 0x31)                                 # LINT1 fixed, vector 0x31
    rig.pc.nmi()
    assert lapic.irr >> 0x31 & 1 and not rig.cpu.nmi_pending


def test_an_io_apic_entry_in_nmi_mode_delivers_an_nmi():
    rig = Rig("bare")
    kernel(rig, resend=False)
    rig.code(CODE_A, log("M"), A.HLT, log("W"), A.HLT)
    rig.run(1000)
    io = rig.pc.ioapic
    io.write_register(0x10 + 2 * 5, (4 << 8) | (1 << 15))           # pin 5: NMI (level: treated as edge)
    io.write_register(0x11 + 2 * 5, 0)                               # to APIC ID 0
    rig.pc.irq[5].set(True)
    assert rig.cpu.nmi_pending and not io.entries[5] & (1 << 14)     # no remote IRR for NMI
    rig.run(1000)
    assert logged(rig) == "MEXW"


def test_an_nmi_ipi_reaches_another_processor_and_blocking_is_per_processor():
    from tvmm.machine.pc import PC
    pc = PC(4 << 20, ncpus=2)
    apic.send_ipi(pc, 0, 1, apic.DM_NMI, 0, apic.SH_NONE, True, 0)
    assert pc.cpus[1].nmi_pending and not pc.cpus[0].nmi_pending


def test_one_nmi_is_latched_while_blocked_and_the_rest_are_lost(rig):
    """Three NMIs while the handler runs: one is taken after its IRET."""
    kernel(rig, resend=False)
    burst = A.store_imm(ICR_LO, NMI_SELF) * 3
    rig.code(H_NMI, log("E"), A.inc_mem(NMIS), cmp_jne(NMIS, 1, burst), log("X"), A.IRET)
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), A.store_imm(ICR_LO, NMI_SELF), log("A"), A.HLT)
    rig.run(10_000)
    assert logged(rig) == "EXEXA" and rig.r32(NMIS) == 2
    if rig.monitor is not None:
        details = [e.detail.split()[0].rstrip(":;") for e in rig.kinds(ev.NMI_EVENT)]
        assert details == ["delivered", "latched", "lost", "lost", "delivered"]


def test_an_iret_that_faults_still_ends_nmi_blocking():
    rig = Rig("bare")
    kernel(rig, resend=False, paging=False)
    # the NMI handler corrupts the CS it returns to, so its IRET raises #GP(0)
    rig.code(H_NMI, b"\xc7\x44\x24\x04" + p32(0), A.IRET)          # mov dword [esp+4], 0
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), A.store_imm(ICR_LO, NMI_SELF), A.HLT)
    rig.run(1000)
    assert rig.r32(RES + 0x80) == 13                                 # the #GP handler ran
    assert not rig.cpu.nmi_blocked


def test_an_nmi_waits_one_instruction_after_mov_ss(rig):
    kernel(rig, resend=False)
    rig.code(H_NMI, A.POP_EAX, A.store(RES), A.HLT)
    after = rig.code(CODE_A, A.mov_ax(0x10), b"\x8e\xd0", b"\xbc" + p32(STACK_A))   # mov ss, ax; mov esp
    rig.code(after, A.HLT)
    rig.run(2)                                                       # mov ax; mov ss
    assert rig.cpu.inhibit
    rig.cpu.nmi()                                                    # arrives in the MOV SS shadow
    rig.run(100)
    assert rig.r32(RES) == after                                     # not between MOV SS and MOV ESP


def test_a_blocked_nmi_does_not_wake_a_halted_processor():
    rig = Rig("bare")
    kernel(rig, resend=False, paging=False)
    rig.code(CODE_A, A.HLT)
    rig.run(10)
    rig.cpu.nmi_blocked = True
    rig.cpu.nmi()
    stop = rig.run(1_000_000)
    assert stop.kind.value == "halted" and rig.cpu.nmi_pending and rig.cpu.icount == 1


def test_nmi_blocking_and_the_latch_are_saved_in_snapshots(tmp_path):
    rig = Rig("monitor", tmp_path)
    kernel(rig, resend=False)
    rig.code(H_NMI, log("E"), A.HLT)                                 # stays in the handler: blocked
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), A.store_imm(ICR_LO, NMI_SELF), A.HLT)
    rig.run(1000)
    cpu = rig.cpu
    cpu.nmi()
    assert cpu.nmi_blocked and cpu.nmi_pending
    snap = snapshot.take(rig.guest)
    assert snap.cpu["nmi_blocked"] and snap.cpu["nmi_pending"]
    cpu.nmi_blocked = cpu.nmi_pending = False
    snapshot.restore(rig.guest, snap)
    assert cpu.nmi_blocked and cpu.nmi_pending


def test_a_self_ipi_in_nmi_mode_is_delivered_by_the_local_apic_itself():
    from tvmm.machine.clock import Clock
    from tvmm.machine.devices.lapic import LocalApic
    got = []
    la = LocalApic(Clock(), 0, send_ipi=lambda *a: got.append(a), nmi=lambda: got.append("nmi"))
    la.mmio_write(0xF0, 4, 0x1FF)
    la.mmio_write(0x300, 4, NMI_SELF)
    la.mmio_write(0x300, 4, (1 << 18) | (5 << 8) | (1 << 14))      # INIT to self: invalid, dropped
    assert got == ["nmi"]


def test_a_latched_nmi_is_taken_right_after_an_iret_to_another_stack(rig):
    """kvm-unit-tests eventinj "NMI that will fault on IRET": the handler
    latches a second NMI, then IRETs (to a label, on a fresh stack whose
    page was just flushed); the second NMI is taken right after that IRET,
    so its frame holds the IRET's target."""
    kernel(rig, resend=False)
    new_top = STACK_A - 0x3000
    first = (A.store_imm(ICR_LO, NMI_SELF)                                 # latched: blocked
             + b"\x89\xe2" + b"\xbc" + p32(new_top)                        # mov edx, esp; mov esp, new_top
             + b"\x0f\x01\x3d" + p32(new_top - 4)                          # invlpg: the IRET's pops fault (monitor)
             + A.PUSHFD + b"\x0e")                                         # pushfd; push cs
    label = H_NMI + 0x80
    first += b"\x68" + p32(label) + A.IRET                                 # push label; iret
    nested = b"\x8b\x04\x24" + A.store(RES) + A.IRET                       # mov eax, [esp]; store; iret
    rig.code(H_NMI, A.inc_mem(NMIS), cmp_jne(NMIS, 1, first + b"\xeb" + bytes([len(nested)])), nested)
    rig.code(label, b"\x89\xd4", A.IRET)                                   # mov esp, edx; iret (the real one)
    rig.code(CODE_A, A.store_imm(SVR, 0x1FF), A.store_imm(ICR_LO, NMI_SELF), log("A"), A.HLT)
    rig.run(10_000)
    assert rig.crashed is None, rig.crashed
    assert rig.r32(NMIS) == 2 and rig.r32(RES) == label and logged(rig) == "A"
