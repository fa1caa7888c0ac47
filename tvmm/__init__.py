"""tvmm: a terminal debugger for guest operating systems under a trap-and-emulate VMM."""

__version__ = "0.1.0"
