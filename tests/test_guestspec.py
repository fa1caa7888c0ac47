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


def test_guests_from_a_toml_configuration(tmp_path):
    from tvmm.guestspec import SpecError, load_config
    cfg = tmp_path / "guests.toml"
    cfg.write_text('[[guest]]\nname = "a"\nkernel = "k.elf"\ncmdline = "seed=5, fixed"\nmem = "32M"\n\n'
                   '[[guest]]\nname = "b"\nboot = "disk"\ndisk0 = "/abs/d.img"\nmem = 67108864\n')
    a, b = load_config(str(cfg))
    assert (a.name, a.kernel, a.cmdline, a.mem) == ("a", str(tmp_path / "k.elf"), "seed=5, fixed", 32 << 20)
    assert (b.boot, b.disk0, b.mem) == ("disk", "/abs/d.img", 64 << 20)
    for text, words in [("[[guest]]\nname = 'x'\ncolour = 'red'\nkernel='k'\n", "unknown guest option"),
                        ("guest = 3\n", "[[guest]] tables"), ("[[guest\n", "not a valid TOML"),
                        ("[[guest]]\nname = 'x'\n", "needs disk0=PATH")]:
        cfg.write_text(text)
        with pytest.raises(SpecError, match=words.replace("[", r"\[").replace("]", r"\]")):
            load_config(str(cfg))
    with pytest.raises(SpecError, match="no such configuration file"):
        load_config(str(tmp_path / "none.toml"))
