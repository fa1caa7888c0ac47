"""The bundled sample guests that ``tvmm`` with no arguments opens.

They live in the source tree's ``samples/build`` (committed ELF files), so
``pip install -e .`` followed by ``tvmm`` works without a compiler.
"""

from __future__ import annotations

from pathlib import Path

from .guestspec import GuestSpec, SpecError

BUILD = Path(__file__).resolve().parents[1] / "samples" / "build"


def bundled_specs() -> list[GuestSpec]:
    """multitask (runs forever), flaky (seed 13: crashes after a while),
    paging and disk (finish quickly), hello."""
    if not (BUILD / "flaky.elf").exists():
        raise SpecError(f"the bundled samples are not in {BUILD} (run tvmm from a source checkout, "
                        "or give guests with --guest)")
    b = str(BUILD)
    return [GuestSpec(name="multitask", kernel=f"{b}/multitask.elf", cmdline="forever", mem=32 << 20),
            GuestSpec(name="flaky", kernel=f"{b}/flaky.elf", cmdline="seed=13", mem=32 << 20),
            GuestSpec(name="paging", kernel=f"{b}/paging.elf", mem=32 << 20),
            GuestSpec(name="disk", kernel=f"{b}/disk.elf", disk0=f"{b}/disk.img", mem=16 << 20),
            GuestSpec(name="hello", kernel=f"{b}/hello.elf", mem=16 << 20)]
