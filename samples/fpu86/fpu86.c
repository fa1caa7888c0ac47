/* fpu86: lazy FPU switching between two ring-3 tasks, and virtual-8086 mode.
 *
 * What it demonstrates:
 *  - the x87 FPU found the classic way (FNINIT, then FNSTSW/FNSTCW read
 *    0000h/037Fh), CR0.MP and CR0.NE set, CR0.EM clear; FXSAVE/FXRSTOR when
 *    CPUID reports FXSR (after setting CR4.OSFXSR), FNSAVE/FRSTOR otherwise;
 *  - a 16-bit routine run in virtual-8086 mode: entered by IRET from ring 0
 *    with EFLAGS.VM set and IOPL 0, deliberately, so that its CLI, STI and
 *    INT 21h (a "DOS" print-string call) and its final HLT all raise #GP;
 *    the kernel decodes the instruction at CS:IP, emulates it (a virtual IF,
 *    the string printed from DS:DX) and skips it, and on HLT reads the
 *    routine's result from the VM86 frame;
 *  - two ring-3 tasks preempted by the PIT (IRQ 0), both doing x87 work with
 *    their partial sums held in x87 registers, one under a control word of
 *    its own; every task switch sets CR0.TS, and the #NM handler (vector 7)
 *    clears it (CLTS), saves the previous owner's FPU state and restores the
 *    current task's (FNINIT on its first use) - or, when the task already
 *    owns the FPU, does nothing more.
 * The kernel itself never runs an x87 instruction after the probe (it is
 * built with -mno-80387; tasks.c alone is x87 code). */
#include "fpu86.h"

#define NTASKS   2
#define PIT_HZ   10000               /* a tick every 10,000 instructions under tvmm */
#define CR0_MP   (1u << 1)
#define CR0_EM   (1u << 2)
#define CR0_TS   (1u << 3)
#define CR0_NE   (1u << 5)
#define CR4_OSFXSR (1u << 9)
#define EFL_IF   (1u << 9)
#define EFL_VM   (1u << 17)
#define EFL_DEFINED 0x23A03              /* VM IOPL OF IF CF and bit 1: MUL leaves SF ZF AF PF undefined */

/* ----------------------------------------------------------------- output */
static void put_hexn(u32 v, int digits)
{
    char buf[9];
    for (int i = 0; i < digits; i++)
        buf[i] = "0123456789abcdef"[(v >> (4 * (digits - 1 - i))) & 15];
    buf[digits] = 0;
    puts(buf);
}

/* v / 10^digits with `digits` decimals; no 64-bit division (no libgcc). */
static void put_fixed(u64 v, u32 digits)
{
    static const u64 p10[20] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
        1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
        1000000000000000000ULL, 10000000000000000000ULL };
    char buf[24];
    int n = 0, started = 0;
    for (int i = 19; i >= 0; i--) {
        int d = 0;
        while (v >= p10[i]) {
            v -= p10[i];
            d++;
        }
        if (d || started || i <= (int)digits) {
            buf[n++] = (char)('0' + d);
            started = 1;
        }
        if (i == (int)digits && digits)
            buf[n++] = '.';
    }
    buf[n] = 0;
    puts(buf);
}

/* ------------------------------------------------------------------- FPU */
static int use_fxsr;

static inline void clts(void) { __asm__ volatile("clts"); }
static inline void set_ts(void) { write_cr0(read_cr0() | CR0_TS); }

static void fpu_save(u8 *area)
{
    if (use_fxsr)
        __asm__ volatile("fxsave %0" : "=m"(*(u8 (*)[512])area));
    else
        __asm__ volatile("fnsave %0" : "=m"(*(u8 (*)[108])area));
}

static void fpu_restore(const u8 *area)
{
    if (use_fxsr)
        __asm__ volatile("fxrstor %0" : : "m"(*(const u8 (*)[512])area));
    else
        __asm__ volatile("frstor %0" : : "m"(*(const u8 (*)[108])area));
}

static void cpuid1(u32 *edx)
{
    u32 a = 1, b, c, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
    *edx = d;
}

static void fpu_init(void)
{
    write_cr0((read_cr0() & ~(CR0_EM | CR0_TS)) | CR0_MP | CR0_NE);
    u16 sw = 0xFFFF, cw = 0;
    __asm__ volatile("fninit\n\tfnstsw %0\n\tfnstcw %1" : "=m"(sw), "=m"(cw));
    if (sw != 0 || cw != 0x037F)
        panic("no x87 FPU");
    u32 features;
    cpuid1(&features);
    use_fxsr = (features >> 24) & 1;
    if (use_fxsr)
        __asm__ volatile("mov %%cr4, %%eax\n\torl %0, %%eax\n\tmov %%eax, %%cr4" : : "i"(CR4_OSFXSR) : "eax");
    puts("fpu86: x87 FPU found by FNINIT (FSW 0x");
    put_hexn(sw, 4);
    puts(", FCW 0x");
    put_hexn(cw, 4);
    puts(use_fxsr ? "); CPUID has FXSR: lazy switching with FXSAVE/FXRSTOR\n"
                  : "); CPUID has no FXSR: lazy switching with FNSAVE/FRSTOR\n");
}

/* ----------------------------------------------------------------- tasks */
struct task {
    int id, done, fpu_used;
    struct trapframe *tf;
    u8 fpu[512] __attribute__((aligned(16)));     /* FXSAVE image, or FNSAVE's first 108 bytes */
    u32 kstack[1024] __attribute__((aligned(16)));
    u32 ustack[1024] __attribute__((aligned(16)));
    struct result res;
};

static struct task tasks[NTASKS];
static struct task *cur, *fpu_owner;
static int running;
static u32 jiffies, task_switches, nm_traps, fpu_switches, fninits, syscalls;

static void summary(void) __attribute__((noreturn));

static void switch_to(struct task *t)
{
    cur = t;
    set_kernel_stack((u32)&t->kstack[1024]);
    set_ts();                                     /* whoever touches the FPU next: #NM */
    task_switches++;
    trap_switch(t->tf);
}

/* Round robin among the tasks not done; `cur` gave up the processor with tf. */
static void schedule(struct trapframe *tf)
{
    cur->tf = tf;
    for (int i = 1; i <= NTASKS; i++) {
        struct task *t = &tasks[(cur->id + i) % NTASKS];
        if (!t->done) {
            if (t != cur)
                switch_to(t);
            return;
        }
    }
    summary();
}

static void tick(struct trapframe *tf)
{
    jiffies++;
    pic_eoi(0);
    if (running && (tf->cs & 3) == 3)
        schedule(tf);
}

/* #NM: a task used the FPU with CR0.TS set. */
static void device_not_available(struct trapframe *tf)
{
    if ((tf->cs & 3) != 3)
        panic("#NM in the kernel");
    nm_traps++;
    clts();
    if (fpu_owner == cur)
        return;                                   /* its state is still in the FPU */
    if (fpu_owner)
        fpu_save(fpu_owner->fpu);
    if (cur->fpu_used) {
        fpu_restore(cur->fpu);
    } else {
        __asm__ volatile("fninit");
        cur->fpu_used = 1;
        fninits++;
    }
    fpu_owner = cur;
    fpu_switches++;
}

static void syscall(struct trapframe *tf)
{
    syscalls++;
    if (tf->eax == SYS_PUTS) {
        puts((const char *)tf->ebx);
    } else if (tf->eax == SYS_EXIT) {
        cur->res = *(struct result *)tf->ebx;
        cur->done = 1;
        if (fpu_owner == cur)
            fpu_owner = 0;                        /* its state dies with it */
        schedule(tf);
    } else {
        panic("bad system call");
    }
}

static void start_task(struct task *t, int id, void (*entry)(struct result *))
{
    t->id = id;
    u32 *usp = &t->ustack[1024];
    *--usp = (u32)&t->res;                        /* entry(&res) */
    *--usp = 0;                                   /* return address: never used */
    struct trapframe *tf = (struct trapframe *)((u32)&t->kstack[1024] - sizeof *tf);
    for (u32 *p = (u32 *)tf; p < (u32 *)(tf + 1); p++)
        *p = 0;
    tf->ds = tf->es = tf->fs = tf->gs = SEG_UDATA;
    tf->cs = SEG_UCODE;
    tf->eflags = 0x202;                           /* IF, IOPL 0 */
    tf->eip = (u32)entry;
    tf->user_esp = (u32)usp;
    tf->user_ss = SEG_UDATA;
    t->tf = tf;
}

static void put_result(struct task *t, const char *what)
{
    puts("fpu86: task ");
    serial_putc((char)('A' + t->id));
    cga_putc((char)('A' + t->id));
    puts(" (FCW 0x");
    put_hexn(t->res.fcw, 4);
    puts(") ");
    puts(what);
    puts(" = ");
    put_fixed(t->res.scaled, t->res.digits);
    puts(" [m80 ");
    put_hexn(t->res.value[9] << 8 | t->res.value[8], 4);
    puts(":");
    put_hexn(*(u32 *)&t->res.value[4], 8);
    put_hexn(*(u32 *)&t->res.value[0], 8);
    puts("]\n");
}

static void summary(void)
{
    cli();
    put_result(&tasks[0], "pi");
    put_result(&tasks[1], "sqrt(1)+...+sqrt(6000)");
    puts("fpu86: task B integer checksum 0x");
    put_hexn(tasks[1].res.integer, 8);
    puts("\n");
    puts("fpu86: task switches ");
    put_dec(task_switches);
    puts(", #NM traps ");
    put_dec(nm_traps);
    puts(", FPU state switches ");
    put_dec(fpu_switches);
    puts(", FNINITs ");
    put_dec(fninits);
    puts(", jiffies ");
    put_dec(jiffies);
    puts("\n");
    puts("fpu86: done\n");
    for (;;)
        hlt();
}

/* -------------------------------------------------------- virtual-8086 */
#define V86_SEG   0x2000                           /* the routine at 2000:0000 (linear 0x20000) */
#define V86_SS    0x3000
#define V86_SP    0xFFFE

struct v86frame {
    struct trapframe tf;
    u32 es, ds, fs, gs;                           /* pushed (and popped by IRET) only for VM86 */
};

extern const u8 v86_code[], v86_code_end[];
void v86_enter(struct v86frame *f);
void v86_leave(void) __attribute__((noreturn));

static u32 v86_stack[1024] __attribute__((aligned(16)));
static struct v86frame v86_out;
static int vif = 1;
static u32 gp_cli, gp_sti, gp_int, gp_hlt;

static void v86_gp(struct trapframe *tf)
{
    struct v86frame *f = (struct v86frame *)tf;
    if (!(tf->eflags & EFL_VM)) {
        puts("fpu86: #GP at eip ");
        put_hex(tf->eip);
        puts("\n");
        panic("general protection fault");
    }
    const u8 *ip = (const u8 *)((tf->cs << 4) + (tf->eip & 0xFFFF));
    switch (ip[0]) {
    case 0xFA:                                    /* CLI */
        vif = 0;
        gp_cli++;
        tf->eip = (tf->eip + 1) & 0xFFFF;
        break;
    case 0xFB:                                    /* STI */
        vif = 1;
        gp_sti++;
        tf->eip = (tf->eip + 1) & 0xFFFF;
        break;
    case 0xCD:                                    /* INT n: only 21h AH=09h */
        gp_int++;
        if (ip[1] != 0x21 || ((tf->eax >> 8) & 0xFF) != 0x09)
            panic("v86: unsupported INT");
        puts("fpu86: v86 INT 21h AH=09h from ");
        put_hexn(tf->cs, 4);
        puts(":");
        put_hexn(tf->eip, 4);
        puts(": \"");
        for (const char *s = (const char *)((f->ds << 4) + (tf->edx & 0xFFFF)); *s != '$'; s++) {
            serial_putc(*s);
            cga_putc(*s);
        }
        puts("\"\n");
        tf->eip = (tf->eip + 2) & 0xFFFF;
        break;
    case 0xF4:                                    /* HLT: the routine is done */
        gp_hlt++;
        v86_out = *f;
        v86_leave();
    default:
        panic("v86: unexpected #GP");
    }
}

static void run_v86(void)
{
    u8 *dst = (u8 *)(V86_SEG << 4);
    for (const u8 *s = v86_code; s < v86_code_end; s++)
        *dst++ = *s;
    struct v86frame *f = (struct v86frame *)((u32)&v86_stack[1024] - sizeof *f);
    for (u32 *p = (u32 *)f; p < (u32 *)(f + 1); p++)
        *p = 0;
    f->tf.cs = V86_SEG;
    f->tf.eip = 0;
    f->tf.eflags = EFL_VM | EFL_IF | 0x2;         /* IOPL 0: CLI, STI, INT n trap */
    f->tf.user_ss = V86_SS;
    f->tf.user_esp = V86_SP;
    f->ds = f->es = f->fs = f->gs = V86_SEG;
    set_kernel_stack((u32)&v86_stack[1024]);      /* where events from VM86 land */
    puts("fpu86: entering virtual-8086 mode at ");
    put_hexn(V86_SEG, 4);
    puts(":0000 (linear 0x");
    put_hexn(V86_SEG << 4, 5);
    puts("), IOPL 0\n");
    v86_enter(f);
    struct trapframe *o = &v86_out.tf;
    puts("fpu86: v86 result DX:AX 0x");
    put_hexn(o->edx & 0xFFFF, 4);
    puts(":0x");
    put_hexn(o->eax & 0xFFFF, 4);
    puts(", BX 0x");
    put_hexn(o->ebx & 0xFFFF, 4);
    puts(", SI 0x");
    put_hexn(o->esi & 0xFFFF, 4);
    puts(", ES 0x");
    put_hexn(v86_out.es, 4);
    puts(", HLT at ");
    put_hexn(o->cs, 4);
    puts(":");
    put_hexn(o->eip, 4);
    puts("\n");
    puts("fpu86: v86 #GP: CLI ");
    put_dec(gp_cli);
    puts(", STI ");
    put_dec(gp_sti);
    puts(", INT ");
    put_dec(gp_int);
    puts(", HLT ");
    put_dec(gp_hlt);
    puts(" emulated; virtual IF ");
    put_dec((u32)vif);
    puts(", EFLAGS ");
    put_hex(o->eflags & EFL_DEFINED);
    puts("\n");
}

/* ----------------------------------------------------------------- main */
void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    serial_init();
    x86_init();
    set_trap_handler(7, device_not_available);
    set_trap_handler(13, v86_gp);
    set_trap_handler(IRQ_BASE + 0, tick);
    set_trap_handler(T_SYSCALL, syscall);
    pic_init();                                   /* every IRQ masked while in VM86 */
    fpu_init();
    run_v86();
    set_ts();                                     /* the kernel is done with the FPU */
    start_task(&tasks[0], 0, task_a);
    start_task(&tasks[1], 1, task_b);
    pit_periodic(PIT_HZ);
    pic_unmask(0);
    running = 1;
    cur = &tasks[0];
    set_kernel_stack((u32)&cur->kstack[1024]);
    trap_resume(cur->tf);
}
