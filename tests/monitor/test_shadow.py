"""Shadow paging: hidden and reflected page faults, the guest's A/D bits,
TLB semantics (INVLPG, CR3 switches, global pages), 4 MiB pages, the pool
limit.  Each guest sets up its own tables; the processor only ever walks the
monitor's shadow."""

from __future__ import annotations

from tvmm.monitor import events as ev

from .kit import PD, Layout, X, boot

P, W, U, A, D, G, PS = 1, 2, 4, 0x20, 0x40, 0x100, 0x80


def _guest(tmp_path, code, **kw):
    monitor, g = boot(tmp_path, code + X.HLT, **kw)
    lay = Layout(g)
    lay.flat_gdt_idt()
    lay.identity(0, 0x200000)                 # the kernel's own memory, supervisor RW
    return monitor, g, lay


def _host_frame_of(g, gpa):
    return g.gmem.frames[gpa >> 12]


def test_hidden_fault_fills_the_shadow_with_the_guests_mapping_and_sets_its_accessed_bit(tmp_path):
    code = X.mov_ebx(0x400000) + X.LOAD_EAX_EBX + X.store_abs(0x5100)
    monitor, g, lay = _guest(tmp_path, code)
    pte_at = lay.map(0x400000, 0x300000, P | W)
    g.gmem.write(0x300000, 4, 0xC0FFEE11)
    lay.paging_on()
    monitor.run(10_000)
    assert g.state == "halted"
    assert g.gmem.read(0x5100, 4) == 0xC0FFEE11
    assert lay.result()[2] == -1                             # the guest saw no fault
    pte = g.gmem.read(pte_at, 4)
    assert pte & A and not pte & D                           # read: accessed, not dirty
    entry = g.shadow.entry(0x400000)
    assert entry >> 12 == _host_frame_of(g, 0x300000)        # guest-virtual -> host-physical
    assert entry & P and not entry & W                       # not writable until dirty
    assert monitor.log.count("g", ev.PF_HIDDEN) >= 1
    assert monitor.log.count("g", ev.PF_REFLECTED) == 0


def test_first_write_sets_the_guests_dirty_bit_then_the_shadow_is_writable(tmp_path):
    code = (X.mov_ebx(0x400000) + X.LOAD_EAX_EBX + X.mov_eax(0x1234) + X.STORE_EBX_EAX)
    monitor, g, lay = _guest(tmp_path, code)
    pte_at = lay.map(0x400000, 0x300000, P | W)
    lay.paging_on()
    monitor.run(10_000)
    assert g.gmem.read(0x300000, 4) == 0x1234
    assert g.gmem.read(pte_at, 4) & (A | D) == A | D
    assert g.shadow.entry(0x400000) & W


def test_not_present_fault_is_reflected_with_the_guests_cr2_and_error_code(tmp_path):
    code = X.mov_ebx(0x800123) + X.STORE_EBX_EAX
    monitor, g, lay = _guest(tmp_path, code)
    lay.paging_on()
    monitor.run(10_000)
    err, cr2, vec = lay.result()
    assert (vec, cr2, err) == (14, 0x800123, 0x2)            # supervisor write, not present
    assert g.cr(2) == 0x800123
    assert monitor.log.count("g", ev.PF_REFLECTED) == 1


def test_write_to_a_read_only_page_faults_with_wp_and_not_without(tmp_path):
    code = X.mov_ebx(0x400000) + X.mov_eax(0x77) + X.STORE_EBX_EAX
    for wp, expect_fault in ((True, True), (False, False)):
        sub = tmp_path / str(wp)
        sub.mkdir()
        monitor, g, lay = _guest(sub, code)
        lay.map(0x400000, 0x300000, P)                       # read-only
        lay.paging_on(wp=wp)
        monitor.run(10_000)
        err, cr2, vec = lay.result()
        if expect_fault:
            assert (vec, err, cr2) == (14, 0x3, 0x400000)    # present, write, supervisor
            assert g.gmem.read(0x300000, 4) == 0
        else:
            assert vec == -1 and g.gmem.read(0x300000, 4) == 0x77
            assert not g.shadow.entry(0x400000) & U           # supervisor-only in the shadow


def test_the_shadow_follows_the_guests_page_table_writes(tmp_path):
    # read via the old mapping, retarget the PTE (a write to a watched guest
    # table: the derived shadow entry goes), read again, INVLPG, read again
    monitor, g, lay = _guest(tmp_path, b"")
    pte_at = lay.map(0x400000, 0x300000, P | W)
    code = (X.mov_ebx(0x400000) + X.LOAD_EAX_EBX + X.store_abs(0x5100)
            + X.mov_eax(0x301000 | P | W) + X.store_abs(pte_at)
            + X.LOAD_EAX_EBX + X.store_abs(0x5104)
            + X.INVLPG_EBX + X.LOAD_EAX_EBX + X.store_abs(0x5108) + X.HLT)
    g.gmem.write_bytes(0x100020, code)
    g.gmem.write(0x300000, 4, 0x11111111)
    g.gmem.write(0x301000, 4, 0x22222222)
    lay.paging_on()
    monitor.run(10_000)
    assert [g.gmem.read(0x5100 + 4 * i, 4) for i in range(3)] == [0x11111111, 0x22222222, 0x22222222]
    assert monitor.log.count("g", ev.PT_WRITE) >= 1
    assert monitor.log.count("g", ev.EXIT_INVLPG) == 1
    assert g.shadow.entry(0x400000) >> 12 == _host_frame_of(g, 0x301000)


def test_shadow_roots_are_cached_across_cr3_switches(tmp_path):
    pd2 = 0x30000
    monitor, g, lay = _guest(tmp_path, b"")
    lay.identity(0, 0x200000, pd=pd2)
    lay.map(0x400000, 0x300000, P | W)
    lay.map(0x400000, 0x301000, P | W, pd=pd2)
    one = X.mov_ebx(0x400000) + X.LOAD_EAX_EBX
    switch = lambda pd: X.mov_eax(pd) + X.MOV_CR3_EAX       # noqa: E731
    code = one + switch(pd2) + one + b"".join(switch(pd) + one for pd in (PD, pd2) * 5) + X.HLT
    g.gmem.write_bytes(0x100020, code)
    lay.paging_on()
    monitor.run(20_000)
    assert g.state == "halted"
    switches = monitor.log.recent("g", kinds={ev.EXIT_CR_WRITE})
    assert sum("cached shadow root" in e.detail for e in switches) == 10
    assert {PD, pd2} <= set(g.shadow.roots)
    hidden = monitor.log.recent("g", kinds={ev.PF_HIDDEN})
    assert all(e.icount < 12 for e in hidden)                # every fill happened on the first visits


def test_cr3_switch_changes_address_space_and_reads_back_the_guest_value(tmp_path):
    pd2 = 0x30000
    monitor, g, lay = _guest(tmp_path, b"")
    lay.identity(0, 0x200000, pd=pd2)
    lay.map(0x400000, 0x300000, P | W)
    lay.map(0x400000, 0x301000, P | W, pd=pd2)
    code = (X.mov_ebx(0x400000) + X.LOAD_EAX_EBX + X.store_abs(0x5100)
            + X.mov_eax(pd2) + X.MOV_CR3_EAX + X.LOAD_EAX_EBX + X.store_abs(0x5104)
            + X.MOV_EAX_CR3 + X.store_abs(0x5108) + X.HLT)
    g.gmem.write_bytes(0x100020, code)
    g.gmem.write(0x300000, 4, 0xAAAA)
    g.gmem.write(0x301000, 4, 0xBBBB)
    lay.paging_on()
    monitor.run(10_000)
    assert [g.gmem.read(0x5100 + 4 * i, 4) for i in range(3)] == [0xAAAA, 0xBBBB, pd2]
    assert g.vcpu.cr3 == g.shadow.root_hpa != pd2              # the processor walks the shadow
    assert monitor.log.count("g", ev.EXIT_CR_WRITE) >= 1 and monitor.log.count("g", ev.EXIT_CR_READ) == 1


def test_a_page_directory_write_drops_the_shadow_table_it_mirrored(tmp_path):
    monitor, g, lay = _guest(tmp_path, b"")
    lay.map(0x400000, 0x300000, P | W)
    second = lay.next_table                                  # another guest page table for the same 4 MiB
    g.gmem.write_bytes(second, bytes(4096))
    g.gmem.write(second, 4, 0x302000 | P | W)
    code = (X.mov_ebx(0x400000) + X.LOAD_EAX_EBX + X.store_abs(0x5100)
            + X.mov_eax(second | P | W | U) + X.store_abs(PD + 4)   # retarget directory entry 1
            + X.LOAD_EAX_EBX + X.store_abs(0x5104) + X.HLT)
    g.gmem.write_bytes(0x100020, code)
    g.gmem.write(0x300000, 4, 0xAAAA)
    g.gmem.write(0x302000, 4, 0xCCCC)
    lay.paging_on()
    monitor.run(10_000)
    assert [g.gmem.read(0x5100, 4), g.gmem.read(0x5104, 4)] == [0xAAAA, 0xCCCC]


def test_guest_4mib_pages_are_split_into_4k_shadow_entries(tmp_path):
    code = X.mov_ebx(0x801234) + X.LOAD_EAX_EBX + X.store_abs(0x5100)
    monitor, g, lay = _guest(tmp_path, code, mem=16 << 20)
    g.gmem.write(PD + (0x800000 >> 22) * 4, 4, 0x400000 | P | W | PS)
    g.gmem.write(0x401234, 4, 0x5A5A5A5A)
    lay.paging_on(cr4=0x10)                                  # PSE
    monitor.run(10_000)
    assert g.gmem.read(0x5100, 4) == 0x5A5A5A5A
    entry = g.shadow.entry(0x801000)
    assert entry >> 12 == _host_frame_of(g, 0x401000)
    assert g.gmem.read(PD + 8, 4) & A                        # the guest's large PDE: accessed


def test_a_tiny_shadow_pool_still_works_by_rebuilding(tmp_path):
    addrs = [0x400000 * k + 0x1000 for k in range(1, 7)]      # six different page tables
    code = b"".join(X.mov_ebx(a) + X.LOAD_EAX_EBX + X.store_abs(0x5100 + 4 * i) for i, a in enumerate(addrs))
    monitor, g, lay = _guest(tmp_path, code, mem=32 << 20, pool_frames=3)
    for i, a in enumerate(addrs):
        lay.map(a, 0x300000 + i * 0x1000, P | W)
        g.gmem.write(0x300000 + i * 0x1000, 4, 0x100 + i)
    lay.paging_on()
    monitor.run(20_000)
    assert g.state == "halted", g.reason
    assert [g.gmem.read(0x5100 + 4 * i, 4) for i in range(6)] == [0x100 + i for i in range(6)]
    assert monitor.pool.used <= 3 and g.shadow.pool_flushes > 0


def test_paging_off_guests_run_on_an_identity_shadow(tmp_path):
    code = X.mov_eax(0xFEEDF00D) + X.store_abs(0x345678)
    monitor, g, lay = _guest(tmp_path, code)
    monitor.run(10_000)
    assert g.shadow.entry(0x345000) >> 12 == _host_frame_of(g, 0x345000)
    assert g.monitor.host.read(_host_frame_of(g, 0x345000) * 4096 + 0x678, 4) == 0xFEEDF00D
    assert g.cr(0) & 0x80000001 == 0x1                       # the guest still has paging off


def test_a_page_table_overwritten_wholesale_stops_being_shadowed(tmp_path):
    # The guest frees a page table and reuses the frame as data (here: zeroes
    # it with rep stosd).  After a flood of writes with no fill using it, the
    # monitor stops write-protecting it; the mapping it held is gone for real.
    monitor, g, lay = _guest(tmp_path, b"")
    pte_at = lay.map(0x400000, 0x300000, P | W)
    table = pte_at & ~0xFFF
    code = (X.mov_ebx(0x400000) + X.LOAD_EAX_EBX
            + b"\xbf" + table.to_bytes(4, "little") + b"\xb9\x00\x04\x00\x00" + X.mov_eax(0)
            + b"\xfc\xf3\xab"                                   # cld; rep stosd
            + X.LOAD_EAX_EBX + X.HLT)
    g.gmem.write_bytes(0x100020, code)
    lay.paging_on()
    monitor.run(20_000)
    assert lay.result() == (0, 0x400000, 14)                # not present any more: reflected
    assert g.shadow.unshadowed >= 1
    assert g.gmem.frames[table >> 12] not in g.monitor.host.write_watch
    assert monitor.log.count("g", ev.PT_WRITE) <= 20         # a flood is cut short


def test_vcpus_share_a_root_and_a_table_write_reaches_every_vcpu_using_it(tmp_path):
    """Two vCPUs on one page directory walk one shadow root; a guest write to
    a table it mirrors drops the entry and the translation cached by *both*
    processors, whichever vCPU wrote; each keeps its own current root."""
    from tvmm.monitor.snapshot import _set_cpu_state, cpu_state
    code = X.mov_ebx(0x400000) + X.LOAD_EAX_EBX + X.store_abs(0x5100)
    monitor, g, lay = _guest(tmp_path, code, cpus=2)
    pte_at = lay.map(0x400000, 0x300000, P | W)
    lay.paging_on()
    bsp, ap = g.vcpus
    _set_cpu_state(ap, cpu_state(bsp))               # as an AP's trampoline would leave it
    assert ap.shadow_root is bsp.shadow_root and not ap.wait_sipi
    monitor.run(10_000)
    assert bsp.halted and ap.halted and g.gmem.read(0x5100, 4) == g.gmem.read(0x300000, 4)
    assert 0x400 in bsp._tlb_filled and 0x400 in ap._tlb_filled
    assert g.shadow.entry(0x400000) >> 12 == _host_frame_of(g, 0x300000)
    g.gmem.write(pte_at, 4, 0x301000 | P | W)         # the guest retargets the page
    assert g.shadow.entry(0x400000) == 0
    assert 0x400 not in bsp._tlb_filled and 0x400 not in ap._tlb_filled
    # a CR3 switch on one vCPU leaves the other's root alone
    ap.set_cr3(0x30000)
    assert ap.shadow_root is not bsp.shadow_root and bsp.shadow_root.key == PD
