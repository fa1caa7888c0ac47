"""Reference figure: run one benchmark workload in unicorn and print JSON.

Executed as a script in its own process by ``tvmm bench`` (never imported by
tvmm).  Instructions are counted by the same program run on tvmm: the
workloads are deterministic, so both execute the same instruction stream.
Unicorn counts REP iterations as one instruction each, as tvmm does.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def main(name: str) -> None:
    from unicorn import Uc, UC_ARCH_X86, UC_MODE_32
    from unicorn import x86_const as X
    from tvmm.bench import workloads as W  # data only

    w = next(x for x in W.ALL if x.name == name)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, W.MEM_SIZE)
    for pa, data in W.build_memory_image(w):
        uc.mem_write(pa, data)
    regmap = {"eax": X.UC_X86_REG_EAX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX,
              "ebx": X.UC_X86_REG_EBX, "esp": X.UC_X86_REG_ESP, "ebp": X.UC_X86_REG_EBP,
              "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI}
    uc.reg_write(X.UC_X86_REG_ESP, W.STACK_TOP)
    for r, v in w.regs.items():
        uc.reg_write(regmap[r], v)
    if w.paging:
        uc.reg_write(X.UC_X86_REG_CR3, W.PD)
        uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) | 0x80000001)
    end = W.CODE + w.code.index(b"\xf4")
    t0 = time.perf_counter()
    uc.emu_start(W.CODE, end)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt}))


if __name__ == "__main__":
    main(sys.argv[1])
