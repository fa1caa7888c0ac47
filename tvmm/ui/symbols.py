"""Kernel symbols from an ELF file (pyelftools), for the disassembly pane.

``Symbols.load(path)`` reads function and object symbols once;
``name_at(addr)`` gives ``func+0x12`` for an address inside a known
function; ``lookup(name)`` the address of a symbol.  A missing or non-ELF
file gives an empty table: the UI shows raw addresses.
"""

from __future__ import annotations

import bisect


class Symbols:
    def __init__(self, entries: list[tuple[int, int, str]] | None = None):
        self._entries = sorted(entries or [])           # (addr, size, name)
        self._starts = [e[0] for e in self._entries]
        self._by_name = {name: addr for addr, _s, name in self._entries}

    @classmethod
    def load(cls, path: str | None) -> "Symbols":
        if not path:
            return cls()
        try:
            from elftools.common.exceptions import ELFError
            from elftools.elf.elffile import ELFFile
            with open(path, "rb") as f:
                elf = ELFFile(f)
                tab = elf.get_section_by_name(".symtab")
                if tab is None:
                    return cls()
                entries = [(s["st_value"], s["st_size"], s.name) for s in tab.iter_symbols()
                           if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
                           and s["st_shndx"] != "SHN_UNDEF"]
        except (OSError, ELFError, ValueError):
            return cls()
        return cls(entries)

    def name_at(self, addr: int) -> str | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        while i >= 0:
            start, size, name = self._entries[i]
            if start == addr:
                return name
            if start < addr < start + max(size, 1):
                return f"{name}+{addr - start:#x}"
            if size or start < addr - 0x10000:
                return None
            i -= 1
        return None

    def exact(self, addr: int) -> str | None:
        i = bisect.bisect_left(self._starts, addr)
        if i < len(self._entries) and self._entries[i][0] == addr:
            return self._entries[i][2]
        return None

    def lookup(self, name: str) -> int | None:
        return self._by_name.get(name)
