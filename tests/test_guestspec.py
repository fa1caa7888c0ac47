"""--guest specifications: what users type, and the one-line errors they get."""

from __future__ import annotations

import pytest

from tvmm.guestspec import GuestSpec, SpecError, parse_guest, parse_size


def test_full_spec():
    g = parse_guest("name=xv6,kernel=k.elf,cmdline='a=1, b',disk1=fs.img,mem=224M")
    assert g == GuestSpec(name="xv6", kernel="k.elf", cmdline="a=1, b", disk1="fs.img", mem=224 << 20,
                          boot="multiboot")


def test_bare_path_and_inferred_boot_methods():
    assert parse_guest("kernel.elf", "g1") == GuestSpec(name="g1", kernel="kernel.elf")
    assert parse_guest("disk0=xv6.img").boot == "disk"
    assert parse_guest("rom=bios.bin").boot == "rom"


@pytest.mark.parametrize("text,message", [
    ("kernel=k,colour=red", "unknown guest option 'colour'"),
    ("kernel=k,mem=lots", "bad memory size"),
    ("kernel=k,mem=1M", "out of range"),
    ("kernel=k,kernel=j", "given twice"),
    ("name=a b,kernel=k", "bad guest name"),
    ("boot=disk,kernel=k", "needs disk0=PATH"),
    ("boot=floppy,kernel=k", "unknown boot method"),
    ("kernel=k,cmdline='x", "unterminated quote"),
    ("kernel=k,disk0", "needs a value"),
])
def test_errors_are_one_line(text, message):
    with pytest.raises(SpecError, match=message) as ei:
        parse_guest(text)
    assert "\n" not in str(ei.value)


def test_sizes():
    assert parse_size("64M") == 64 << 20
    assert parse_size("1g") == 1 << 30
    assert parse_size("4096K") == 4 << 20
