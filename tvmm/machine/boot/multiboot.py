"""Multiboot v1 (the way QEMU's ``-kernel`` does it).

``load(mem, path, cmdline, modules)`` reads a kernel file, finds its Multiboot
header, loads it into guest-physical memory — ELF program headers at their
*physical* addresses (pyelftools), or the a.out kludge addresses when header
flag 16 is set — builds the Multiboot information structure (memory sizes, an
E820-style memory map, command line, modules, boot loader name) where it
overlaps neither the kernel nor a module (``info_area``), and returns
a ``BootInfo`` with the entry point and EBX.  ``enter(cpu, info)`` puts the
CPU in the state the specification defines: protected mode, paging off, flat
4 GiB CS/DS/ES/FS/GS/SS, EAX = 0x2BADB002, EBX = the information structure,
interrupts off.

Invariants: nothing is written to guest memory until the whole kernel and
every module has been read and checked, so a bad file changes nothing; every
problem with the user's files is a ``BootError`` with one clear line (only
regular files of at most 256 MiB are read; every program header and every
segment's file data must lie inside the file, never padded with zeros).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from .errors import BootError, read_file

HEADER_MAGIC = 0x1BADB002
BOOT_MAGIC = 0x2BADB002
HEADER_SEARCH = 8192

# Header flags (spec 3.1.2)
MB_PAGE_ALIGN = 1 << 0
MB_MEMORY_INFO = 1 << 1
MB_VIDEO_MODE = 1 << 2
MB_AOUT_KLUDGE = 1 << 16
SUPPORTED_REQUIRED = MB_PAGE_ALIGN | MB_MEMORY_INFO       # bits 0-15 the loader must honour

# Information structure flags (spec 3.3)
INFO_MEMORY = 1 << 0
INFO_BOOTDEV = 1 << 1
INFO_CMDLINE = 1 << 2
INFO_MODS = 1 << 3
INFO_MMAP = 1 << 6
INFO_LOADER_NAME = 1 << 9

INFO_ADDR = 0x9000          # where the information structure and its strings go, when free
INFO_LOW = 0x1000           # the lowest address the information area may take (above the IVT and BDA)
INFO_LIMIT = 0x9F000        # ... and the highest it may reach in low memory (below the EBDA)
EBDA = 0x9FC00
LOADER_NAME = b"tvmm\0"


@dataclass
class Segment:
    paddr: int
    data: bytes
    memsz: int


@dataclass
class BootInfo:
    entry: int
    info_addr: int
    kernel_end: int
    modules: list = field(default_factory=list)      # (start, end, string)
    cmdline: str = ""


def find_header(image: bytes) -> tuple[int, tuple]:
    """Offset and the 12 header words (magic .. depth) of the Multiboot header."""
    limit = min(len(image), HEADER_SEARCH) - 12
    for off in range(0, max(limit + 1, 0), 4):
        magic, flags, checksum = struct.unpack_from("<III", image, off)
        if magic == HEADER_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            words = struct.unpack_from("<12I", image.ljust(off + 48, b"\0"), off)
            return off, words
    raise BootError("no Multiboot header in the first 8 KiB (is this a Multiboot kernel?)")


def _elf_segments(image: bytes, path: str) -> tuple[list[Segment], int]:
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(io.BytesIO(image))
        if elf.elfclass != 32 or elf["e_machine"] != "EM_386":
            raise BootError(f"{path}: not a 32-bit x86 ELF kernel (class {elf.elfclass}, {elf['e_machine']})")
        phoff, phnum, phentsize = elf["e_phoff"], elf["e_phnum"], elf["e_phentsize"]
        if phnum and (phentsize < 32 or phoff + phnum * phentsize > len(image)):
            raise BootError(f"{path}: ELF program headers (offset {phoff:#x}, {phnum} of {phentsize} bytes) "
                            f"run past the end of the file ({len(image)} bytes)")
        segs = []
        entry = elf["e_entry"]
        entry_pa = None
        for n, ph in enumerate(elf.iter_segments()):
            if ph["p_type"] != "PT_LOAD" or ph["p_memsz"] == 0:
                continue
            off, filesz, memsz = ph["p_offset"], ph["p_filesz"], ph["p_memsz"]
            if filesz and off + filesz > len(image):        # (a bss-only segment reads nothing)
                raise BootError(f"{path}: program header {n}: segment data at file offset {off:#x}+{filesz:#x} "
                                f"runs past the end of the file ({len(image)} bytes)")
            if filesz > memsz:
                raise BootError(f"{path}: program header {n}: file size {filesz:#x} is larger than "
                                f"memory size {memsz:#x}")
            segs.append(Segment(ph["p_paddr"], image[off:off + filesz], memsz))
            if ph["p_vaddr"] <= entry < ph["p_vaddr"] + memsz:
                entry_pa = entry - ph["p_vaddr"] + ph["p_paddr"]
    except BootError:
        raise
    except Exception as e:          # pyelftools on a malformed file: ELFError, struct/construct errors, ...
        raise BootError(f"{path}: not a valid ELF file ({type(e).__name__}: {_first_line(e)})") from None
    if not segs:
        raise BootError(f"{path}: ELF file has no loadable segments")
    # QEMU translates a virtual entry point into the physical one.
    return segs, entry if entry_pa is None else entry_pa


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:120] if text else "malformed"


def _aout_segments(image: bytes, hdr_off: int, words: tuple, path: str) -> tuple[list[Segment], int]:
    header_addr, load_addr, load_end, bss_end, entry = words[3:8]
    if load_addr > header_addr:
        raise BootError(f"{path}: Multiboot header has load_addr above header_addr")
    file_off = hdr_off - (header_addr - load_addr)
    if file_off < 0:
        raise BootError(f"{path}: Multiboot load address lies before the start of the file")
    size = (load_end - load_addr) if load_end else len(image) - file_off
    if size < 0 or file_off + size > len(image):
        raise BootError(f"{path}: Multiboot load_end_addr runs past the end of the file")
    memsz = max(size, (bss_end - load_addr) if bss_end else size)
    return [Segment(load_addr, image[file_off:file_off + size], memsz)], entry


def read_kernel(path: str) -> bytes:
    return read_file(path, "kernel")


def load(mem, path: str, cmdline: str = "", modules: list[tuple[str, str]] | None = None,
         image: bytes | None = None) -> BootInfo:
    """Load a Multiboot kernel into ``mem``; ``modules`` are (path, string) pairs."""
    image = read_kernel(path) if image is None else image
    try:
        hdr_off, words = find_header(image)
    except BootError as e:
        raise BootError(f"{path}: {e}") from None
    flags = words[1]
    unsupported = flags & 0xFFFF & ~SUPPORTED_REQUIRED & ~MB_VIDEO_MODE
    if unsupported:
        raise BootError(f"{path}: Multiboot header requires features tvmm does not provide (flags {unsupported:#x})")
    if flags & MB_AOUT_KLUDGE:
        segs, entry = _aout_segments(image, hdr_off, words, path)
    else:
        if image[:4] != b"\x7fELF":
            raise BootError(f"{path}: not an ELF file and its Multiboot header has no load addresses")
        segs, entry = _elf_segments(image, path)
    kernel_end = 0
    for s in segs:
        if s.paddr < 0x1000 or s.paddr + s.memsz > mem.size:
            raise BootError(f"{path}: segment at {s.paddr:#x}+{s.memsz:#x} does not fit in "
                            f"{mem.size >> 20} MiB of guest memory")
        kernel_end = max(kernel_end, s.paddr + s.memsz)
    mod_images = [(read_kernel(p), s) for p, s in (modules or [])]
    # Everything checked: now write guest memory.
    for s in segs:
        mem.write_bytes(s.paddr, s.data)
        if s.memsz > len(s.data):
            mem.fill(s.paddr + len(s.data), s.memsz - len(s.data), 0)
    placed = []
    addr = (kernel_end + 0xFFF) & ~0xFFF
    for data, string in mod_images:
        if addr + len(data) > mem.size:
            raise BootError(f"module {string!r} does not fit in guest memory")
        mem.write_bytes(addr, data)
        placed.append((addr, addr + len(data), string))
        addr = (addr + len(data) + 0xFFF) & ~0xFFF
    taken = [(s.paddr, s.paddr + s.memsz) for s in segs] + [(a, e) for a, e, _s in placed]
    info_addr = build_info(mem, cmdline, placed, taken)
    return BootInfo(entry=entry, info_addr=info_addr, kernel_end=kernel_end, modules=placed, cmdline=cmdline)


def memory_map(mem_size: int) -> list[tuple[int, int, int]]:
    """E820-style (base, length, type) entries: 1 = usable, 2 = reserved."""
    return [(0, EBDA, 1), (EBDA, 0xA0000 - EBDA, 2), (0xF0000, 0x10000, 2),
            (0x100000, mem_size - 0x100000, 1), (0xFFFC0000, 0x40000, 2)]


def info_area(size: int, taken: list[tuple[int, int]], mem_size: int) -> int:
    """Where an information area of ``size`` bytes goes: never over the kernel or a module.

    INFO_ADDR when it is free (so every kernel that leaves it alone sees the same
    layout), otherwise the lowest free page-aligned gap in low memory, otherwise
    the first page above 1 MiB and above everything loaded.  A kernel linked over 0x9000 (as
    kvm-unit-tests' realmode is) must not find its code overwritten.
    """
    def free(a: int) -> bool:
        return all(a + size <= lo or a >= hi for lo, hi in taken)

    candidates = [INFO_ADDR] + list(range(INFO_LOW, INFO_LIMIT - size + 1, 0x1000))
    for a in candidates:
        if a + size <= INFO_LIMIT and free(a):
            return a
    a = (max([0x100000] + [hi for _lo, hi in taken]) + 0xFFF) & ~0xFFF       # never in the EBDA or the hole
    if a + size > mem_size:
        raise BootError("no room in guest memory for the Multiboot information structure")
    return a


def build_info(mem, cmdline: str, modules: list, taken: list[tuple[int, int]] = ()) -> int:
    """Write the information structure where ``info_area`` says; returns its address.

    ``taken`` lists the [start, end) ranges the kernel and modules occupy.
    """
    strings = bytearray()
    cmd = cmdline.encode("latin-1", "replace") + b"\0"
    mod_bytes = [s.encode("latin-1", "replace") + b"\0" for (_a, _e, s) in modules]
    mmap_entries = memory_map(mem.size)
    size = (0x400 + len(cmd) + len(LOADER_NAME) + sum(len(b) for b in mod_bytes) + 3
            + 16 * len(modules) + 24 * len(mmap_entries))
    if size > INFO_LIMIT - INFO_LOW:
        raise BootError("command line and module strings are too long for the boot information area")
    info_addr = info_area(size, list(taken), mem.size)
    base = info_addr + 0x400

    def put(b: bytes) -> int:
        a = base + len(strings)
        strings.extend(b)
        return a

    cmd_addr = put(cmd)
    name_addr = put(LOADER_NAME)
    mod_strs = [put(b) for b in mod_bytes]
    while len(strings) % 4:
        strings.append(0)
    mods_addr = base + len(strings)
    mods = b"".join(struct.pack("<IIII", a, e, sa, 0) for (a, e, _s), sa in zip(modules, mod_strs))
    strings.extend(mods)
    mmap_addr = base + len(strings)
    mmap = b"".join(struct.pack("<IQQI", 20, b, ln, t) for b, ln, t in mmap_entries)
    strings.extend(mmap)
    assert 0x400 + len(strings) <= size
    flags = INFO_MEMORY | INFO_BOOTDEV | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME
    if modules:
        flags |= INFO_MODS
    mem_upper = min(mem.size, 0xFFFC0000) // 1024 - 1024
    # offsets 0-40: flags mem_lower mem_upper boot_device cmdline mods_count mods_addr syms[4]
    info = struct.pack("<IIIIIIIIIII", flags, 639, mem_upper, 0x8000FFFF, cmd_addr,
                       len(modules), mods_addr if modules else 0, 0, 0, 0, 0)
    info += struct.pack("<II", len(mmap), mmap_addr)            # mmap_length, mmap_addr (offsets 44, 48)
    info += struct.pack("<IIIII", 0, 0, 0, name_addr, 0)       # drives, config, loader name, apm
    mem.write_bytes(info_addr, info.ljust(0x58, b"\0"))
    mem.write_bytes(base, bytes(strings))
    return info_addr


def enter(cpu, info: BootInfo) -> None:
    """The machine state of spec 3.2 at the kernel's entry point."""
    from ..boot_state import enter_flat32
    enter_flat32(cpu, info.entry, esp=0)
    cpu.regs[0] = BOOT_MAGIC
    cpu.regs[3] = info.info_addr
