"""Boot paths: Multiboot v1 kernels, disk boot sectors, firmware ROMs."""

from .errors import BootError

__all__ = ["BootError", "boot"]


def boot(spec, mem, cpu, disk0) -> None:
    """Load and enter what ``spec`` says (``spec.boot``: ``multiboot`` with
    ``kernel`` and ``cmdline``, ``disk`` from ``disk0``'s sector 0, ``rom``
    from ``spec.rom``) into ``mem`` and ``cpu`` — a bare PC's or a guest's."""
    from . import disk, multiboot, rom
    if spec.boot == "disk":
        disk.load(mem, disk0)
        disk.enter(cpu)
    elif spec.boot == "rom":
        rom.load(mem, spec.rom)
        rom.enter(cpu)
    else:
        multiboot.enter(cpu, multiboot.load(mem, spec.kernel, spec.cmdline))
