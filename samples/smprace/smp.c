/* Starting the other processors of a PC, the way the Intel MultiProcessor
 * Specification 1.4 (appendix B) says, for the smprace sample.
 *
 * 1. Find the MP floating pointer structure ("_MP_", 16 bytes, on a 16-byte
 *    boundary, checksum 0) in the first KiB of the EBDA, the last KiB of base
 *    memory, or the BIOS ROM at 0xF0000-0xFFFFF (MP spec 4.1).  It points at
 *    the configuration table ("PCMP"), whose entries follow its 44-byte
 *    header: a processor entry (type 0, 20 bytes) gives a local APIC ID and
 *    flags (bit 0 enabled, bit 1 the bootstrap processor); every other entry
 *    type is 8 bytes.
 * 2. An application processor (AP) sits in wait-for-SIPI after reset.  The
 *    BSP sends it INIT, then STARTUP twice (the second is ignored by an AP
 *    already running) through its local APIC's ICR (0x310 = destination,
 *    0x300 = the command, whose write sends it).  STARTUP's vector V starts
 *    the AP in real mode at CS:IP = V<<8:0, i.e. physical V << 12, so the
 *    first code it runs must sit below 1 MiB on a page boundary: the
 *    trampoline below is copied to 0x7000 (the Multiboot information starts
 *    at 0x9000).
 * 3. The trampoline loads its own GDT, sets CR0.PE, far-jumps to 32-bit code,
 *    takes the stack and CPU number the BSP left in its parameter block and
 *    jumps to ap_start(id) here, which loads the kernel's GDT, IDT and page
 *    tables (copies of the BSP's registers), says "cpuN: starting" and
 *    calls the sample's ap_main(id).
 *
 * The delays the specification asks for (10 ms after INIT, 200 us after each
 * STARTUP) are loops of a fixed number of instructions, never clock reads:
 * under tvmm guest time is the instruction count, so this boots the same way
 * every run.  The BSP starts one AP at a time and waits for it to check in
 * (the parameter block is then free again); an AP that never checks in is
 * given up on with a message and can no longer join (an atomic
 * compare-exchange on its state decides which side was first); it keeps its
 * number, so cpu_is_up() tells who is running.
 */
#include "smp.h"

#define TRAMPOLINE 0x7000                   /* STARTUP vector 7 */
#define AP_STACK   4096
#define ICR_INIT   0x0000C500               /* INIT, level triggered, assert */
#define ICR_SIPI   0x00000600               /* STARTUP (| vector) */
#define ICR_BUSY   0x00001000               /* delivery status: send pending */
#define CHECKIN_SPINS 2000000               /* how long the BSP waits for an AP */

enum { CPU_ABSENT, CPU_STARTING, CPU_UP, CPU_ABANDONED };

u32 ncpus = 1;
u8 cpu_apic_id[MAX_CPUS];
struct spinlock console = { 0, 0xFFFFFFFF };

static u8 apic_to_cpu[256];
static volatile u32 cpu_state[MAX_CPUS];
static u8 ap_stacks[MAX_CPUS][AP_STACK] __attribute__((aligned(16)));
static struct { u16 limit; u32 base; } __attribute__((packed)) bsp_gdtr, bsp_idtr;
static u32 bsp_cr0, bsp_cr3;

/* ------------------------------------------------------------ trampoline */
/* Assembled at its link address (somewhere above 1 MiB) but run from its copy
 * at TRAMPOLINE, so every absolute address in it is TRAMPOLINE + (label -
 * ap_trampoline).  The parameter block at its end is filled in per AP. */
#define T(sym) "0x7000+" #sym "-ap_trampoline"
void ap_start(u32 id) __attribute__((noreturn));
__asm__(
    "    .pushsection .text\n"
    "    .global ap_trampoline, ap_trampoline_end, ap_boot_stack, ap_boot_id, ap_boot_entry\n"
    "    .p2align 4\n"
    "    .code16\n"
    "ap_trampoline:\n"
    "    cli\n"
    "    cld\n"
    "    xorw %ax, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %ss\n"
    "    lgdtl " T(ap_tramp_gdtr) "\n"
    "    movl %cr0, %eax\n"
    "    orl $1, %eax\n"                       /* protection on, paging still off */
    "    movl %eax, %cr0\n"
    "    ljmpl $0x08, $" T(ap_tramp_32) "\n"
    "    .code32\n"
    "ap_tramp_32:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %ss\n"
    "    movw %ax, %fs\n"
    "    movw %ax, %gs\n"
    "    movl " T(ap_boot_stack) ", %esp\n"
    "    pushl " T(ap_boot_id) "\n"            /* ap_start(id) */
    "    pushl $0\n"                           /* no return address: it never returns */
    "    jmp *" T(ap_boot_entry) "\n"
    "    .p2align 3\n"
    "ap_tramp_gdt:\n"
    "    .quad 0\n"
    "    .quad 0x00cf9a000000ffff\n"           /* 0x08: flat 4 GiB code, as x86_init's */
    "    .quad 0x00cf92000000ffff\n"           /* 0x10: flat 4 GiB data */
    "ap_tramp_gdtr:\n"
    "    .word 23\n"
    "    .long " T(ap_tramp_gdt) "\n"
    "    .p2align 2\n"
    "ap_boot_stack: .long 0\n"
    "ap_boot_id:    .long 0\n"
    "ap_boot_entry: .long 0\n"
    "ap_trampoline_end:\n"
    "    .popsection\n");

extern u8 ap_trampoline[], ap_trampoline_end[], ap_boot_stack[], ap_boot_id[], ap_boot_entry[];

static volatile u32 *tramp_param(u8 *field)
{
    return (volatile u32 *)(TRAMPOLINE + (u32)(field - ap_trampoline));
}

/* --------------------------------------------------------------- MP table */
static int checksum_ok(const u8 *p, u32 len)
{
    u8 sum = 0;
    for (u32 i = 0; i < len; i++)
        sum = (u8)(sum + p[i]);
    return sum == 0;
}

static u32 bda_word(u32 addr)              /* (a plain load of a constant address
                                              below 4 KiB upsets gcc's -Warray-bounds) */
{
    u16 v;
    __asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(addr));
    return v;
}

static const u8 *find_mp(u32 start, u32 len)
{
    for (u32 a = start; a + 16 <= start + len; a += 16) {
        const u8 *p = (const u8 *)a;
        if (p[0] == '_' && p[1] == 'M' && p[2] == 'P' && p[3] == '_' && checksum_ok(p, 16))
            return p;
    }
    return 0;
}

void smp_find_cpus(void)
{
    const u8 *fp = 0;
    u32 ebda = bda_word(0x40E) << 4;       /* the EBDA's segment */
    u32 basemem = bda_word(0x413) * 1024;  /* base memory in KiB */
    if (ebda)
        fp = find_mp(ebda, 1024);
    if (!fp && basemem >= 1024)
        fp = find_mp(basemem - 1024, 1024);
    if (!fp)
        fp = find_mp(0xF0000, 0x10000);
    ncpus = 1;
    cpu_apic_id[0] = (u8)(lapic_read(LAPIC_ID) >> 24);    /* the BSP is cpu 0 */
    if (!fp || !*(const u32 *)(fp + 4)) {
        puts("smp: no MP table, one processor\n");
        return;
    }
    const u8 *table = (const u8 *)*(const u32 *)(fp + 4);
    u16 length = *(const u16 *)(table + 4), entries = *(const u16 *)(table + 34);
    if (table[0] != 'P' || table[1] != 'C' || table[2] != 'M' || table[3] != 'P' ||
        !checksum_ok(table, length)) {
        puts("smp: bad MP configuration table, one processor\n");
        return;
    }
    const u8 *e = table + 44;
    for (u32 i = 0; i < entries && e < table + length; i++) {
        if (e[0] != 0) {                   /* bus, I/O APIC, interrupt assignments */
            e += 8;
            continue;
        }
        u8 apic = e[1], flags = e[3];
        e += 20;
        if (!(flags & 1) || apic == cpu_apic_id[0])       /* disabled, or the BSP */
            continue;
        if (ncpus == MAX_CPUS) {
            puts("smp: more than 16 processors, the rest stay off\n");
            break;
        }
        cpu_apic_id[ncpus++] = apic;
    }
    for (u32 i = 0; i < ncpus; i++)
        apic_to_cpu[cpu_apic_id[i]] = (u8)i;
}

u32 this_cpu(void)
{
    return apic_to_cpu[lapic_read(LAPIC_ID) >> 24];
}

/* ------------------------------------------------------------ starting APs */
static void delay(u32 n)                   /* a fixed number of instructions */
{
    for (volatile u32 i = 0; i < n; i++)
        ;
}

static void send_ipi(u32 apic, u32 command)
{
    lapic_write(LAPIC_ICRHI, apic << 24);
    lapic_write(LAPIC_ICRLO, command);
    while (lapic_read(LAPIC_ICRLO) & ICR_BUSY)
        pause();
}

/* Where the trampoline lands, on the AP's own stack. */
void ap_start(u32 id)
{
    __asm__ volatile("mov %0, %%cr3\n\t"
                     "mov %1, %%cr0\n\t"           /* paging (and WP) as on the BSP */
                     "lgdt %2\n\t"
                     "ljmp $0x08, $1f\n1:\n\t"
                     "mov $0x10, %%ax\n\tmov %%ax, %%ds\n\tmov %%ax, %%es\n\t"
                     "mov %%ax, %%ss\n\tmov %%ax, %%fs\n\tmov %%ax, %%gs\n\t"
                     "lidt %3"
                     : : "r"(bsp_cr3), "r"(bsp_cr0), "m"(bsp_gdtr), "m"(bsp_idtr) : "eax", "memory");
    if (cmpxchg(&cpu_state[id], CPU_STARTING, CPU_UP) != CPU_STARTING)
        for (;;) {                          /* too late: the BSP gave up on us */
            cli();
            hlt();
        }
    spin_lock(&console, id);
    puts("cpu");
    put_dec(id);
    puts(": starting\n");
    spin_unlock(&console);
    ap_main(id);
}

u32 smp_start_aps(void)
{
    if (ncpus == 1)
        return 1;
    __asm__ volatile("sgdt %0\n\tsidt %1" : "=m"(bsp_gdtr), "=m"(bsp_idtr));
    __asm__ volatile("mov %%cr0, %0\n\tmov %%cr3, %1" : "=r"(bsp_cr0), "=r"(bsp_cr3));
    u8 *dst = (u8 *)TRAMPOLINE;
    for (u8 *src = ap_trampoline; src < ap_trampoline_end; src++)
        *dst++ = *src;
    lapic_write(LAPIC_SVR, 0x100 | 0xFF);  /* software-enable the BSP's APIC */
    u32 up = 1;
    for (u32 id = 1; id < ncpus; id++) {
        *tramp_param(ap_boot_stack) = (u32)&ap_stacks[id][AP_STACK];
        *tramp_param(ap_boot_id) = id;
        *tramp_param(ap_boot_entry) = (u32)ap_start;
        cpu_state[id] = CPU_STARTING;
        send_ipi(cpu_apic_id[id], ICR_INIT);
        delay(1000);                       /* "10 ms" */
        for (int i = 0; i < 2; i++) {
            send_ipi(cpu_apic_id[id], ICR_SIPI | (TRAMPOLINE >> 12));
            delay(100);                    /* "200 us" */
        }
        u32 spins = 0;
        while (cpu_state[id] == CPU_STARTING && spins < CHECKIN_SPINS) {
            pause();
            spins++;
        }
        if (cmpxchg(&cpu_state[id], CPU_STARTING, CPU_ABANDONED) == CPU_STARTING) {
            spin_lock(&console, 0);
            puts("smp: cpu");
            put_dec(id);
            puts(" (APIC ");
            put_dec(cpu_apic_id[id]);
            puts(") did not start\n");
            spin_unlock(&console);
            continue;
        }
        up++;
    }
    return up;
}

int cpu_is_up(u32 id)
{
    return id == 0 || cpu_state[id] == CPU_UP;
}
