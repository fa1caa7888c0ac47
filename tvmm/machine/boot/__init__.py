"""Boot paths: Multiboot v1 kernels, disk boot sectors, firmware ROMs."""

from .errors import BootError

__all__ = ["BootError"]
