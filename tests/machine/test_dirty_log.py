"""Dirty logging in the machine: an exact record of the frames written since
they were last protected, through every path a store can take (the CPU's
fast path after its first slow store, bulk REP STOS, device/loader bulk
writes, page zeroing), each frame reported once, before the bytes land."""

from __future__ import annotations

from tests.machine.harness import Machine

CODE = 0x1000


def _logging(m: Machine):
    seen = []

    def first_write(pfn):
        if pfn != CODE >> 12:                                     # (the tests write their code too)
            seen.append((pfn, m.mem.read_bytes(pfn << 12, 4)))    # old contents still there
    m.mem.start_dirty_log(first_write)
    return seen


def _stores(m: Machine, addrs, value=0x11223344):
    """mov [addr], eax for each address, then hlt."""
    code = b"\xb8" + value.to_bytes(4, "little")
    for a in addrs:
        code += b"\xa3" + a.to_bytes(4, "little")            # mov [moffs32], eax
    m.write(CODE, code + b"\xf4")
    m.flat32(CODE)
    m.cpu.halted = False


def test_first_store_to_each_page_is_reported_once_before_it_lands():
    m = Machine()
    m.write(0x20000, b"\xaa\xbb\xcc\xdd")
    seen = _logging(m)
    _stores(m, [0x20000, 0x20004, 0x20008, 0x21000, 0x20010, 0x21004] * 20)
    m.cpu.hot = 1                                   # translated code takes the same gate
    m.run_to_hlt()
    assert seen == [(0x20, b"\xaa\xbb\xcc\xdd"), (0x21, b"\0\0\0\0")]
    assert m.mem.dirty == {CODE >> 12, 0x20, 0x21}
    assert m.r32(0x20010) == 0x11223344


def test_protect_makes_a_frame_report_again_and_only_that_frame():
    m = Machine()
    seen = _logging(m)
    _stores(m, [0x20000, 0x21000])
    m.run_to_hlt()
    m.mem.protect([0x20])
    seen.clear()
    _stores(m, [0x20000, 0x21000, 0x20004], value=0x55)
    m.run_to_hlt()
    assert [pfn for pfn, _ in seen] == [0x20]
    assert seen[0][1] == b"\x44\x33\x22\x11"


def test_bulk_paths_report_too():
    m = Machine()
    seen = _logging(m)
    # rep stosd over three pages (the bulk fast path once each page is writable)
    code = bytes.fromhex("bf00000300" "b900180000" "b801010101" "fcf3ab" "f4")
    m.write(CODE, code)
    m.flat32(CODE)
    m.run_to_hlt(1_000_000)
    assert m.read(0x30000, 0x1800 * 4) == b"\x01" * (0x1800 * 4)
    assert sorted(p for p, _ in seen) == [0x30, 0x31, 0x32, 0x33, 0x34, 0x35]
    # device-style bulk writes and page zeroing
    seen.clear()
    m.mem.write_bytes(0x40ffe, b"xyzw")
    m.mem.discard(0x50000, 0x2000)
    m.mem.write(0x60000, 4, 7)
    assert [p for p, _ in seen] == [0x40, 0x41, 0x50, 0x51, 0x60]


def test_stopping_the_log_restores_full_speed_stores():
    m = Machine()
    _logging(m)
    m.mem.stop_dirty_log()
    _stores(m, [0x20000, 0x20004])
    m.run_to_hlt()
    assert m.mem.on_first_write is None and not m.mem.dirty
    assert m.cpu.tlb_w[0x20] is not None          # a write entry again: stores stay on the fast path


def test_starting_the_log_drops_existing_write_entries():
    m = Machine()
    _stores(m, [0x20000])
    m.run_to_hlt()
    assert m.cpu.tlb_w[0x20] is not None
    seen = _logging(m)
    assert m.cpu.tlb_w[0x20] is None
    _stores(m, [0x20000])
    m.run_to_hlt()
    assert [p for p, _ in seen] == [0x20]


def test_a_write_entry_given_back_after_protect_never_outlives_its_mapping():
    """Protecting a frame keeps its translation for a quick re-arm; INVLPG
    (or a CR3 load) must still win: the store after it lands where the
    tables now point, and that frame is the one logged."""
    m = Machine()
    pd, pt = 0x10000, 0x11000
    m.w32(pd, pt | 3)
    for i in range(1024):
        m.w32(pt + 4 * i, (i << 12) | 3 | 0x40)          # identity, present, writable, dirty
    m.w32(pt + 4 * 0x40, 0x50000 | 3 | 0x40)             # linear 0x40000 -> frame 0x50
    cpu = m.cpu
    m.flat32(CODE)
    cpu.set_cr3(pd)
    cpu.set_cr0(cpu.cr0 | 0x80000001)
    seen = _logging(m)                                  # (the walk's A/D updates are logged too)
    cpu.wr32(0x40000, 1)
    assert [p for p, _ in seen if p >= 0x40] == [0x50]
    m.mem.protect([0x50])
    m.w32(pt + 4 * 0x40, 0x60000 | 3 | 0x40)             # now -> frame 0x60
    cpu.invlpg(0x40000)
    cpu.wr32(0x40000, 2)
    assert [p for p, _ in seen if p >= 0x40] == [0x50, 0x60]
    assert m.r32(0x60000) == 2 and m.r32(0x50000) == 1
    # and without a remap the entry comes back after one logged store
    m.mem.protect([0x60])
    cpu.wr32(0x40004, 3)
    assert [p for p, _ in seen if p >= 0x40] == [0x50, 0x60, 0x60] and cpu.tlb_w[0x40] is not None
