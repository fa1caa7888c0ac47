/* bigmem: a kernel whose memory looks like a real kernel's — all of it used.
 *
 * The other samples run in a few MiB of a mostly zero RAM.  A real kernel
 * touches every page it owns at boot (xv6's kinit() kfree()s each free page,
 * poisoning it with 1s; Linux initializes a struct page per frame) and then
 * keeps a working set busy.  This sample does both:
 *  - boot: the RAM size from the Multiboot information (the memory map, or
 *    mem_upper), then every page above the kernel image is poisoned with
 *    0x01010101 (one `rep stosl` per usable region) and pushed on a free
 *    list whose links live in the pages themselves;
 *    prints `bigmem: N MiB, M pages free`;
 *  - paging with 4 MiB pages (CR4.PSE) for the kernel's direct map of RAM and
 *    4 KiB pages for the first 4 MiB (page 0 unmapped, the `.user` code
 *    read-only for ring 3);
 *  - P ring-3 processes (default 4), each with its own page directory
 *    (kernel half copied, user half private at 0xC0000000 and up),
 *    preempted round robin by the PIT (IRQ 0), with `int $0x80` system
 *    calls: write, alloc (map a zeroed page), free (unmap, invlpg, poison,
 *    back on the free list), copy (a fork-like private copy of a page),
 *    round (a barrier) and exit (every page of the process freed);
 *  - in each round every process updates a working set of WS pages
 *    (demand-zero on first touch: the kernel's page-fault handler maps a
 *    zeroed page), allocates, fills and frees 4 scratch pages, copies 2
 *    working-set pages and reads the copies, then reports a checksum of what
 *    it saw; the last process to reach the barrier combines them, and
 *    process 0 prints `round R: checksum XXXXXXXX` (every `every=` rounds).
 *    The checksum depends only on the round and the parameters, never on the
 *    scheduling or on where the pages are.
 * After `rounds=N` rounds the processes exit, freeing everything; the kernel
 * prints `bigmem: all P processes exited, M pages free` (the boot figure
 * again: nothing leaked) and halts for good (`tvmm run --headless` exits 0).
 * Without `rounds=` it runs forever.  Out of memory, or a fault the kernel
 * does not expect, ends with debug-exit status 3.  Cost with the defaults:
 * one instruction per poisoned dword at boot (63 M for 256 MiB, nearly all
 * `rep stosl` iterations), then about 400 k instructions a round.
 *
 * Command line: rounds=N (0: forever, the default), ws=PAGES (working set
 * per process, 1..1024, default 48), procs=P (1..8, default 4), every=N
 * (print a round line every N rounds, default 1).
 */
#include "../lib/x86.h"

#define PTE_P  1u
#define PTE_W  2u
#define PTE_U  4u
#define PTE_PS 0x80u
#define CR4_PSE 0x10u

#define PAGE        4096u
#define USER_BASE   0xC0000000u            /* the user half: PDEs 768..1023 */
#define MAX_RAM     USER_BASE              /* the direct map ends where user space begins */
#define WS_BASE     0xC0000000u            /* working set: demand-zero */
#define SCRATCH     0xC0400000u            /* SYS_ALLOC / SYS_FREE pages */
#define COPY_BASE   0xC0800000u            /* SYS_COPY destinations */
#define STACK_TOP   0xD0000000u            /* one stack page below */
#define MAX_WS      1024
#define MAX_PROCS   8
#define NALLOC      4
#define NCOPY       2
#define POISON      0x01010101u            /* xv6's kfree: memset(v, 1, PGSIZE) */
#define PIT_HZ      2000                   /* a tick every 50,000 instructions under tvmm */

enum { SYS_WRITE = 1, SYS_CONFIG, SYS_ALLOC, SYS_FREE, SYS_COPY, SYS_ROUND, SYS_EXIT };
enum { CFG_ID, CFG_WS, CFG_ROUNDS, CFG_EVERY };

extern char __user_start[], __user_end[];   /* the end of the kernel image (lib/kernel.ld) */

static inline void fill32(u32 pa, u32 v, u32 n)
{
    __asm__ volatile("cld; rep stosl" : "+D"(pa), "+c"(n) : "a"(v) : "memory");
}

static inline void copy32(u32 dst, u32 src, u32 n)
{
    __asm__ volatile("cld; rep movsl" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

static inline u32 rotl(u32 v, u32 n) { return n ? (v << n) | (v >> (32 - n)) : v; }

/* -------------------------------------------------------------- parameters */
static u32 opt_rounds, opt_ws = 48, opt_procs = 4, opt_every = 1;

static int word_at(const char *s, const char *w)
{
    while (*w)
        if (*s++ != *w++)
            return 0;
    return 1;
}

static void parse_cmdline(const char *s)
{
    static const struct { const char *key; u32 *val; u32 lo, hi; } opts[] = {
        { "rounds=", &opt_rounds, 0, 0xFFFFFFFFu },
        { "ws=", &opt_ws, 1, MAX_WS },
        { "procs=", &opt_procs, 1, MAX_PROCS },
        { "every=", &opt_every, 1, 0xFFFFFFFFu },
    };
    for (const char *p = s; *p; p++) {
        if (p != s && p[-1] != ' ')
            continue;
        for (u32 i = 0; i < sizeof opts / sizeof opts[0]; i++) {
            const char *k = opts[i].key;
            if (!word_at(p, k))
                continue;
            const char *d = p;
            while (*k++)
                d++;
            u32 v = 0;
            for (; *d >= '0' && *d <= '9'; d++)
                v = v * 10 + (u32)(*d - '0');
            *opts[i].val = v < opts[i].lo ? opts[i].lo : v > opts[i].hi ? opts[i].hi : v;
        }
    }
}

/* ------------------------------------------------------------ page frames */
static u32 free_list, nfree, boot_free, ram_top;

/* A bug or too little RAM: say so, and end with debug-exit status 3 (not the
 * 0 of a clean halt) so that scripts notice. */
static void die(const char *why)
{
    puts("bigmem: ");
    puts(why);
    puts("\n");
    qemu_exit(1);
    panic(why);
}

static u32 alloc_page(void)
{
    u32 pa = free_list;
    if (!pa)
        die("out of memory");
    free_list = *(u32 *)pa;
    nfree--;
    return pa;                              /* still poisoned, but for the link word */
}

static u32 alloc_zeroed(void)
{
    u32 pa = alloc_page();
    fill32(pa, 0, PAGE / 4);
    return pa;
}

static void free_page(u32 pa)
{
    fill32(pa, POISON, PAGE / 4);           /* catch use after free */
    *(u32 *)pa = free_list;
    free_list = pa;
    nfree++;
}

/* Every page of [start, end) above the kernel: poisoned, then on the list. */
static void add_region(unsigned long long start, unsigned long long end)
{
    u32 kend = (u32)__user_end;
    if (end > MAX_RAM)
        end = MAX_RAM;
    if (start < kend)
        start = kend;
    start = (start + PAGE - 1) & ~(unsigned long long)(PAGE - 1);
    end &= ~(unsigned long long)(PAGE - 1);
    if (start >= end)
        return;
    fill32((u32)start, POISON, (u32)(end - start) / 4);
    for (u32 pa = (u32)start; pa < (u32)end; pa += PAGE) {
        *(u32 *)pa = free_list;
        free_list = pa;
        nfree++;
    }
    if ((u32)end > ram_top)
        ram_top = (u32)end;
}

static u32 memory_init(u32 info)
{
    const u32 *mb = (const u32 *)info;
    u32 mib = 0;
    if (mb[0] & 1)
        mib = (mb[2] + 1024) / 1024;        /* mem_upper: KiB above 1 MiB */
    if (mb[0] & (1 << 6)) {                 /* the memory map */
        for (u32 off = 0; off < mb[11];) {
            const u32 *e = (const u32 *)(mb[12] + off);
            unsigned long long base = e[1] | (unsigned long long)e[2] << 32;
            unsigned long long len = e[3] | (unsigned long long)e[4] << 32;
            if (e[5] == 1)
                add_region(base, base + len);
            off += e[0] + 4;
        }
    } else if (mb[0] & 1) {
        add_region(0x100000, 0x100000 + (unsigned long long)mb[2] * 1024);
    } else {
        die("no memory information from the boot loader");
    }
    if (!mib)
        mib = ram_top >> 20;
    return mib;
}

/* -------------------------------------------------------------- page maps */
static u32 kpd[1024] __attribute__((aligned(4096)));
static u32 kpt0[1024] __attribute__((aligned(4096)));     /* 0..4 MiB in 4 KiB pages */

static void kernel_map_init(void)
{
    for (u32 va = PAGE; va < (4u << 20); va += PAGE)
        kpt0[va >> 12] = va | PTE_P | PTE_W;
    for (u32 va = (u32)__user_start; va < (u32)__user_end; va += PAGE)
        kpt0[va >> 12] = va | PTE_P | PTE_U;                 /* user code: read-only */
    kpd[0] = (u32)kpt0 | PTE_P | PTE_W | PTE_U;              /* U decided per page */
    for (u32 i = 1; i < (ram_top + (4u << 20) - 1) >> 22; i++)
        kpd[i] = (i << 22) | PTE_PS | PTE_P | PTE_W;         /* the direct map: supervisor */
}

static u32 *pte_of(u32 *pd, u32 va)
{
    u32 pde = pd[va >> 22];
    if (!(pde & PTE_P))
        return 0;
    return &((u32 *)(pde & ~0xFFFu))[(va >> 12) & 1023];
}

static void map(u32 *pd, u32 va, u32 pa, u32 flags)
{
    u32 *pde = &pd[va >> 22];
    if (!(*pde & PTE_P))
        *pde = alloc_zeroed() | PTE_P | PTE_W | PTE_U;
    ((u32 *)(*pde & ~0xFFFu))[(va >> 12) & 1023] = pa | flags;
}

/* ------------------------------------------------------------- processes */
enum { UNUSED, RUNNABLE, BLOCKED, DONE };

struct proc {
    u32 id, state, checksum;
    u32 *pd;
    struct trapframe *tf;                   /* saved on its kernel stack */
    u32 kstack[1024] __attribute__((aligned(16)));
};

static struct proc procs[MAX_PROCS];
static struct proc *cur;
static u32 arrived, round, exited, faults;

static void user_main(void);

static void finish(void)
{
    write_cr3((u32)kpd);
    puts("bigmem: all ");
    put_dec(opt_procs);
    puts(opt_procs == 1 ? " process exited, " : " processes exited, ");
    put_dec(nfree);
    puts(" pages free");
    puts(nfree == boot_free ? "\n" : " (LEAKED)\n");
    cli();
    for (;;)
        hlt();
}

static struct trapframe *schedule(void)
{
    for (u32 i = 1; i <= opt_procs; i++) {
        struct proc *p = &procs[(cur->id + i) % opt_procs];
        if (p->state == RUNNABLE) {
            if (p != cur) {
                cur = p;
                set_kernel_stack((u32)&p->kstack[1024]);
                write_cr3((u32)p->pd);
            }
            return p->tf;
        }
    }
    finish();
    __builtin_unreachable();
}

static void proc_init(struct proc *p, u32 id)
{
    p->id = id;
    p->state = RUNNABLE;
    p->pd = (u32 *)alloc_zeroed();
    for (u32 i = 0; i < USER_BASE >> 22; i++)
        p->pd[i] = kpd[i];                  /* the kernel half, shared */
    map(p->pd, STACK_TOP - PAGE, alloc_zeroed(), PTE_P | PTE_W | PTE_U);
    struct trapframe *tf = (struct trapframe *)((u32)&p->kstack[1024] - sizeof *tf);
    for (u32 *w = (u32 *)tf; w < (u32 *)(tf + 1); w++)
        *w = 0;
    tf->ds = tf->es = tf->fs = tf->gs = SEG_UDATA;
    tf->cs = SEG_UCODE;
    tf->user_ss = SEG_UDATA;
    tf->eip = (u32)user_main;
    tf->user_esp = STACK_TOP;
    tf->eflags = 0x202;
    p->tf = tf;
}

static void proc_free(struct proc *p)
{
    write_cr3((u32)kpd);                    /* off the page directory we free */
    for (u32 i = USER_BASE >> 22; i < 1024; i++) {
        if (!(p->pd[i] & PTE_P))
            continue;
        u32 *pt = (u32 *)(p->pd[i] & ~0xFFFu);
        for (u32 j = 0; j < 1024; j++)
            if (pt[j] & PTE_P)
                free_page(pt[j] & ~0xFFFu);
        free_page((u32)pt);
    }
    free_page((u32)p->pd);
    p->pd = kpd;
}

/* ---------------------------------------------------------------- traps */
static void report(const char *what, u32 va, struct trapframe *tf)
{
    puts("bigmem: process ");
    put_dec(cur->id);
    puts(": ");
    puts(what);
    puts(" at ");
    put_hex(va);
    puts(", eip ");
    put_hex(tf->eip);
    puts(", error ");
    put_hex(tf->error);
    puts("\n");
    die("unexpected fault");
}

static void page_fault(struct trapframe *tf)
{
    u32 va = read_cr2();
    if ((tf->cs & 3) && !(tf->error & PTE_P) && va >= WS_BASE && va < WS_BASE + opt_ws * PAGE) {
        map(cur->pd, va & ~0xFFFu, alloc_zeroed(), PTE_P | PTE_W | PTE_U);   /* demand zero */
        faults++;
        return;
    }
    report("page fault", va, tf);
}

static void general_protection(struct trapframe *tf) { report("general protection fault", 0, tf); }

static void timer(struct trapframe *tf)
{
    pic_eoi(0);
    if (tf->cs & 3) {                       /* the kernel runs with interrupts off anyway */
        cur->tf = tf;
        trap_switch(schedule());
    }
}

static int user_page(u32 va) { u32 *pte = pte_of(cur->pd, va); return pte && (*pte & PTE_P) && (*pte & PTE_U); }

static int region_page(u32 va)              /* a page SYS_ALLOC/COPY/FREE may manage */
{
    return !(va & 0xFFF) && ((va >= SCRATCH && va < SCRATCH + (4u << 20)) ||
                             (va >= COPY_BASE && va < COPY_BASE + (4u << 20)));
}

static u32 sys_round(struct trapframe *tf)
{
    cur->checksum = tf->ebx;
    cur->state = BLOCKED;
    cur->tf = tf;
    if (++arrived < opt_procs) {
        trap_switch(schedule());
        return 0;
    }
    /* the last one in: combine in process order, release everybody */
    u32 c = ++round;
    for (u32 i = 0; i < opt_procs; i++)
        c = (c ^ rotl(procs[i].checksum, i)) * 16777619u;
    for (u32 i = 0; i < opt_procs; i++) {
        procs[i].state = RUNNABLE;
        procs[i].tf->eax = c;
    }
    arrived = 0;
    return c;
}

static void syscall(struct trapframe *tf)
{
    u32 a = tf->ebx, b = tf->ecx, *pte;
    switch (tf->eax) {
    case SYS_WRITE:
        if (b >= PAGE || !user_page(a) || !user_page(a + b - !!b)) {
            tf->eax = (u32)-1;
            return;
        }
        for (u32 i = 0; i < b; i++) {
            char ch = ((const char *)a)[i];
            if (ch == '\n')
                serial_putc('\r');
            serial_putc(ch);
            cga_putc(ch);
        }
        tf->eax = b;
        return;
    case SYS_CONFIG:
        tf->eax = a == CFG_ID ? cur->id : a == CFG_WS ? opt_ws : a == CFG_ROUNDS ? opt_rounds : opt_every;
        return;
    case SYS_ALLOC:                         /* map a zeroed page at a */
        if (!region_page(a) || user_page(a)) {
            tf->eax = (u32)-1;
            return;
        }
        map(cur->pd, a, alloc_zeroed(), PTE_P | PTE_W | PTE_U);
        tf->eax = 0;
        return;
    case SYS_COPY:                          /* a private copy of the page at a, mapped at b */
        if (!user_page(a) || (a & 0xFFF) || !region_page(b) || user_page(b)) {
            tf->eax = (u32)-1;
            return;
        }
        {
            u32 pa = alloc_page();
            copy32(pa, *pte_of(cur->pd, a) & ~0xFFFu, PAGE / 4);
            map(cur->pd, b, pa, PTE_P | PTE_W | PTE_U);
        }
        tf->eax = 0;
        return;
    case SYS_FREE:                          /* unmap the page at a and free it */
        if (!region_page(a) || !user_page(a)) {
            tf->eax = (u32)-1;
            return;
        }
        pte = pte_of(cur->pd, a);
        {
            u32 pa = *pte & ~0xFFFu;
            *pte = 0;
            invlpg(a);
            free_page(pa);
        }
        tf->eax = 0;
        return;
    case SYS_ROUND:
        tf->eax = sys_round(tf);
        return;
    case SYS_EXIT:
        cur->state = DONE;
        exited++;
        proc_free(cur);
        trap_switch(schedule());
        return;
    default:
        tf->eax = (u32)-1;
    }
}

/* ------------------------------------------------------------------ user */
#define USER __attribute__((section(".user.text"), noinline))
#define UDATA __attribute__((section(".user.data")))

static inline __attribute__((always_inline)) u32 sys(u32 n, u32 a, u32 b)
{
    u32 r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b) : "memory");
    return r;
}

static const char u_hex[] UDATA = "0123456789abcdef";
static const char u_round[] UDATA = "round ";
static const char u_checksum[] UDATA = ": checksum ";

/* `round R: checksum XXXXXXXX` from a buffer on the user stack */
static USER void u_print_round(u32 r, u32 c)
{
    char buf[48];
    u32 n = 0;
    for (const char *s = u_round; *s; s++)
        buf[n++] = *s;
    char dec[10];
    u32 k = 0;
    do {
        dec[k++] = (char)('0' + r % 10);
        r /= 10;
    } while (r);
    while (k)
        buf[n++] = dec[--k];
    for (const char *s = u_checksum; *s; s++)
        buf[n++] = *s;
    for (int i = 28; i >= 0; i -= 4)
        buf[n++] = u_hex[(c >> i) & 15];
    buf[n++] = '\n';
    sys(SYS_WRITE, (u32)buf, n);
}

#define FNV(h, w) ((h) = ((h) ^ (w)) * 16777619u)

/* One round of one process: its checksum of everything it read. */
static USER u32 u_round_work(u32 id, u32 ws, u32 r)
{
    u32 h = 2166136261u ^ id;
    /* the working set: 32 words of every page, read and written */
    for (u32 i = 0; i < ws; i++) {
        volatile u32 *pg = (volatile u32 *)(WS_BASE + i * PAGE);
        for (u32 j = 0; j < 32; j++) {
            u32 idx = j * 32 + ((r + i) & 31);
            u32 w = pg[idx] * 1103515245u + r + i * 32 + j + id;
            pg[idx] = w;
            FNV(h, w);
        }
    }
    /* scratch pages: allocated (zeroed), filled, read back, freed */
    for (u32 k = 0; k < NALLOC; k++)
        if (sys(SYS_ALLOC, SCRATCH + k * PAGE, 0))
            FNV(h, 0xA110Cu);
    for (u32 k = 0; k < NALLOC; k++) {
        volatile u32 *p = (volatile u32 *)(SCRATCH + k * PAGE);
        if (p[0] || p[1023])
            FNV(h, 0xBAD0u);                /* not zeroed */
        for (u32 j = 0; j < 256; j++)
            p[j * 4 + k] = h + j * k;
        u32 sum = 0;
        for (u32 j = 0; j < 1024; j += 4)
            sum += p[j + k];
        FNV(h, sum);
    }
    for (u32 k = 0; k < NALLOC; k++)
        sys(SYS_FREE, SCRATCH + k * PAGE, 0);
    /* fork-like copies of working-set pages: private, then freed */
    for (u32 k = 0; k < NCOPY; k++) {
        u32 src = WS_BASE + ((r * 7 + k * 3 + id) % ws) * PAGE;
        volatile u32 *c = (volatile u32 *)(COPY_BASE + k * PAGE);
        if (sys(SYS_COPY, src, (u32)c))
            FNV(h, 0xC0B1u);
        for (u32 j = 0; j < 32; j++)
            FNV(h, c[j * 32 + k]);
        c[k] = ~0u;                         /* must not show in the original */
        if (((volatile u32 *)src)[k] == ~0u)
            FNV(h, 0x5A4Eu);
        sys(SYS_FREE, (u32)c, 0);
    }
    return h;
}

static USER void user_main(void)
{
    u32 id = sys(SYS_CONFIG, CFG_ID, 0), ws = sys(SYS_CONFIG, CFG_WS, 0);
    u32 rounds = sys(SYS_CONFIG, CFG_ROUNDS, 0), every = sys(SYS_CONFIG, CFG_EVERY, 0);
    for (u32 r = 1; !rounds || r <= rounds; r++) {
        u32 c = sys(SYS_ROUND, u_round_work(id, ws, r), 0);
        if (id == 0 && r % every == 0)
            u_print_round(r, c);
    }
    sys(SYS_EXIT, 0, 0);
    for (;;)
        ;
}

/* ------------------------------------------------------------------ kmain */
void kmain(u32 magic, u32 info)
{
    (void)magic;
    serial_init();
    if (*(u32 *)info & 4)
        parse_cmdline((const char *)*(u32 *)(info + 16));
    u32 mib = memory_init(info);
    boot_free = nfree;
    puts("bigmem: ");
    put_dec(mib);
    puts(" MiB, ");
    put_dec(nfree);
    puts(" pages free\n");
    puts("bigmem: ");
    put_dec(opt_procs);
    puts(opt_procs == 1 ? " process, working set " : " processes, working set ");
    put_dec(opt_ws);
    puts(opt_ws == 1 ? " page each, " : " pages each, ");
    if (opt_rounds) {
        put_dec(opt_rounds);
        puts(opt_rounds == 1 ? " round\n" : " rounds\n");
    } else {
        puts("running forever\n");
    }
    x86_init();
    set_trap_handler(14, page_fault);
    set_trap_handler(13, general_protection);
    set_trap_handler(T_SYSCALL, syscall);
    set_trap_handler(IRQ_BASE + 0, timer);
    kernel_map_init();
    for (u32 i = 0; i < opt_procs; i++)
        proc_init(&procs[i], i);
    u32 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | CR4_PSE));
    cur = &procs[0];
    write_cr3((u32)cur->pd);
    write_cr0(read_cr0() | 0x80010000);     /* PG, WP */
    set_kernel_stack((u32)&cur->kstack[1024]);
    pic_init();
    pit_periodic(PIT_HZ);
    pic_unmask(0);
    trap_resume(cur->tf);
}
