"""Architecture constants for IA-32, in one place (Intel SDM vol. 3).

Nothing here has behaviour; every other module imports its bit names from
here so that a flag or a vector number is spelled the same everywhere.
"""

# --- EFLAGS (SDM vol. 1, 3.4.3) ---------------------------------------------
CF = 1 << 0
PF = 1 << 2
AF = 1 << 4
ZF = 1 << 6
SF = 1 << 7
TF = 1 << 8
IF = 1 << 9
DF = 1 << 10
OF = 1 << 11
IOPL = 3 << 12
IOPL_SHIFT = 12
NT = 1 << 14
RF = 1 << 16
VM = 1 << 17
AC = 1 << 18
VIF = 1 << 19
VIP = 1 << 20
ID = 1 << 21
EFLAGS_FIXED = 1 << 1          # bit 1 always reads as one
ARITH = CF | PF | AF | ZF | SF | OF

# --- CR0 / CR4 (SDM vol. 3, 2.5) --------------------------------------------
CR0_PE = 1 << 0
CR0_MP = 1 << 1
CR0_EM = 1 << 2
CR0_TS = 1 << 3
CR0_ET = 1 << 4
CR0_NE = 1 << 5
CR0_WP = 1 << 16
CR0_AM = 1 << 18
CR0_NW = 1 << 29
CR0_CD = 1 << 30
CR0_PG = 1 << 31
CR0_VALID = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG

CR4_VME = 1 << 0
CR4_PVI = 1 << 1
CR4_TSD = 1 << 2
CR4_DE = 1 << 3
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_MCE = 1 << 6
CR4_PGE = 1 << 7
CR4_PCE = 1 << 8
# What this CPU lets software set (PAE, VME, PVI are not implemented and #GP).
CR4_OSFXSR = 1 << 9             # FXSAVE/FXRSTOR: accepted; without SSE it changes nothing
CR4_VALID = CR4_TSD | CR4_DE | CR4_PSE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR

# --- Paging structure entries (SDM vol. 3, 4.3) -----------------------------
PTE_P = 1 << 0
PTE_W = 1 << 1
PTE_U = 1 << 2
PTE_PWT = 1 << 3
PTE_PCD = 1 << 4
PTE_A = 1 << 5
PTE_D = 1 << 6
PTE_PS = 1 << 7
PTE_G = 1 << 8
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1

# #PF error code bits
PF_P = 1 << 0
PF_W = 1 << 1
PF_U = 1 << 2
PF_RSVD = 1 << 3
PF_I = 1 << 4

# --- Exception vectors (SDM vol. 3, 6.3.1) -----------------------------------
# (#DF is DF_VEC: the name DF is EFLAGS.DF above.)
# (vector 15 is reserved: #MF is 16, #AC 17, #MC 18)
DE, DB, NMI, BP, OF_VEC, BR, UD, NM, DF_VEC, CSO, TS, NP, SS, GP, PF_VEC, VEC15_RESERVED, MF, AC_VEC, MC = range(19)
EXCEPTION_NAMES = {
    0: "#DE divide error", 1: "#DB debug", 2: "NMI", 3: "#BP breakpoint",
    4: "#OF overflow", 5: "#BR bound range", 6: "#UD invalid opcode",
    7: "#NM device not available", 8: "#DF double fault", 10: "#TS invalid TSS",
    11: "#NP segment not present", 12: "#SS stack fault", 13: "#GP general protection",
    14: "#PF page fault", 16: "#MF x87 error", 17: "#AC alignment check", 18: "#MC machine check",
}
# Vectors that push an error code (SDM vol. 3, table 6-1).
HAS_ERROR_CODE = frozenset({DF_VEC, TS, NP, SS, GP, PF_VEC, AC_VEC})
# Classes for the double-fault rule (SDM vol. 3, table 6-5).
CONTRIBUTORY = frozenset({DE, TS, NP, SS, GP})

# --- Segment registers, in ModRM encoding order --------------------------------
ES, CS, SS_SEG, DS, FS, GS = range(6)
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")

# Descriptor access-byte fields
DESC_P = 0x80
DESC_S = 0x10          # 1: code/data, 0: system
DESC_CODE = 0x08       # with S: executable
DESC_CONFORMING = 0x04  # code: conforming
DESC_EXPDOWN = 0x04    # data: expand-down
DESC_RW = 0x02         # code: readable; data: writable
DESC_ACCESSED = 0x01

# System descriptor / gate types (SDM vol. 3, table 3-2)
SYS_TSS16_AVAIL = 0x1
SYS_LDT = 0x2
SYS_TSS16_BUSY = 0x3
SYS_CALLGATE16 = 0x4
SYS_TASKGATE = 0x5
SYS_INTGATE16 = 0x6
SYS_TRAPGATE16 = 0x7
SYS_TSS32_AVAIL = 0x9
SYS_TSS32_BUSY = 0xB
SYS_CALLGATE32 = 0xC
SYS_INTGATE32 = 0xE
SYS_TRAPGATE32 = 0xF

# --- MSRs ------------------------------------------------------------------------
MSR_TSC = 0x10
MSR_APIC_BASE = 0x1B
MSR_BIOS_SIGN_ID = 0x8B        # microcode revision (EDX after CPUID): 0 here
MSR_PERFCTR0 = 0xC1            # P6 performance counters 0 and 1 (40 bits; RDPMC reads them)
MSR_PERFCTR1 = 0xC2
MSR_EVNTSEL0 = 0x186           # ... and their event selects
MSR_EVNTSEL1 = 0x187
MSR_SYSENTER_CS = 0x174
MSR_SYSENTER_ESP = 0x175
MSR_SYSENTER_EIP = 0x176

# DR6 / DR7
DR6_BS = 1 << 14
DR6_BD = 1 << 13
DR6_FIXED = 0xFFFF0FF0
DR7_GD = 1 << 13

M32 = 0xFFFFFFFF
