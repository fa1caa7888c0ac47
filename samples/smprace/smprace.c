/* smprace: a race between processors — the multiprocessor cousin of the
 * flaky sample, and the reason to want a debugger whose interleaving of
 * vCPUs is part of the machine's specification (`cpus=N,sched=...`).
 *
 * The bootstrap processor reads the Intel MP table, starts every other
 * processor with INIT / STARTUP / STARTUP (smp.c: each one says
 * "cpuN: starting"), turns paging on for all of them, and then every CPU
 * runs the same loop `iters` times (command line `iters=N`, default 300):
 *
 *     n = pool_get() or, one iteration in four, pool_get_fast();
 *     node_claim(n);     owner: NOBODY -> me (lock cmpxchg), link poisoned
 *     work_on(n);        a little arithmetic in n->payload
 *     node_release(n);   owner: me -> NOBODY (lock cmpxchg), pool_put(n)
 *
 * The pool is a LIFO free list of 32 nodes shared by all CPUs, guarded by a
 * spinlock built on `lock xchg`.  While a node is out of the pool its link
 * holds a poison value (0xdead0000 + 16 * its number) that is not mapped,
 * as a careful kernel does to catch use after free.
 *
 * THE BUG is in pool_get_fast(), the "fast path" someone added because the
 * pool lock showed up in a profile:
 *
 *     n = pool;              // (1)
 *     if (n)
 *         pool = n->next;    // (2)
 *
 * without the lock.  Three instructions separate the load of `pool` at (1)
 * from the store at (2).  If this CPU is preempted in that window and
 * another CPU pops (and claims) the same node before it resumes, then either
 * it pops a node that is already owned (node_claim sees an owner: "PANIC:
 * node_claim on cpu1: ..."), or it reads the poisoned link and stores it as
 * the pool's head, and the next pool_get dies on the poison with a page
 * fault ("PANIC: pool_get on cpu0: page fault at 0xdead0070 ...").  Nodes
 * lost on the way are found by the final check (pool_check).  After the
 * PANIC line the CPU loads an empty IDT and executes int3: a triple fault,
 * so the machine really crashes.  A clean run prints the number of nodes
 * handed out and a checksum (which does not depend on the interleaving),
 * then `smprace: ok`, and halts every CPU (tvmm exit status 0).
 *
 * Whether the window is ever hit depends only on where the vCPU schedule
 * preempts a processor: under tvmm, `cpus=2,sched=random:SEED` crashes for
 * some seeds and not for others, and for a given seed always the same way,
 * at the same instruction.  With `cpus=1` it never crashes (no one else
 * touches the pool, and the sample uses no interrupts at all).
 *
 * THE FIX: take the lock in pool_get_fast() as pool_get() does (the
 * command-line flag `fixed` takes exactly that path); then no interleaving
 * crashes it.
 *
 * Debugging it: run a crashing seed under gdb (`tvmm run --gdb 1234
 * --guest 'kernel=samples/build/smprace.elf,cpus=2,sched=random:SEED'`),
 * break on panic_begin, `bt` — the PANIC line names the function and the
 * CPU — then look at `pool`, `nodes` and `percpu`; or watch `pool` and step
 * back to the store in pool_get_fast that wrote the stale head, and to the
 * other CPU's pool_get that ran in between.
 */
#include "smp.h"

#define NODES         32
#define DEFAULT_ITERS 300
#define NOBODY        0xFFFFFFFFu
#define POISON        0xDEAD0000u

struct node {
    struct node *next;                      /* the pool's link; poisoned while out */
    volatile u32 owner;                     /* the CPU using it, NOBODY while free */
    u32 id, payload;
};

static struct node nodes[NODES];
static struct node *volatile pool;          /* the free list: a LIFO stack */
static struct spinlock pool_lock = { 0, NOBODY };
static u32 iters = DEFAULT_ITERS, fixed, running;
static volatile u32 go, finished, panicking;

static struct percpu {
    u32 rng, done, fast, checksum;
    struct node *holding;
} percpu[MAX_CPUS];

static u32 xorshift(u32 *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void panic_begin(u32 cpu, const char *fn);
static void panic_end(void) __attribute__((noreturn));

/* -------------------------------------------------------------- the pool */
__attribute__((noinline)) struct node *pool_get(u32 cpu)
{
    spin_lock(&pool_lock, cpu);
    struct node *n = pool;
    if (n)
        pool = n->next;
    spin_unlock(&pool_lock);
    return n;
}

/* The fast path: "the pool has plenty of nodes, nobody can be popping the
 * same one".  Wrong — see the comment at the top. */
__attribute__((noinline)) struct node *pool_get_fast(u32 cpu)
{
    if (fixed)
        spin_lock(&pool_lock, cpu);
    struct node *n = pool;                  /* (1) */
    if (n)
        pool = n->next;                     /* (2)  <- the window is (1)..(2) */
    if (fixed)
        spin_unlock(&pool_lock);
    return n;
}

__attribute__((noinline)) void pool_put(struct node *n, u32 cpu)
{
    spin_lock(&pool_lock, cpu);
    n->next = pool;
    pool = n;
    spin_unlock(&pool_lock);
}

/* ------------------------------------------------------------- the nodes */
__attribute__((noinline)) void node_claim(struct node *n, u32 cpu)
{
    if (!n) {
        panic_begin(cpu, "node_claim");
        puts("the pool is empty, but no CPU holds more than one of its ");
        put_dec(NODES);
        puts(" nodes");
        panic_end();
    }
    u32 was = cmpxchg(&n->owner, NOBODY, cpu);
    if (was != NOBODY) {
        panic_begin(cpu, "node_claim");
        puts("node ");
        put_dec(n->id);
        puts(" came out of the pool, but cpu");
        put_dec(was);
        puts(" owns it");
        panic_end();
    }
    n->next = (struct node *)(POISON + n->id * 16);   /* out of the pool: no link */
    percpu[cpu].holding = n;
}

__attribute__((noinline)) void work_on(struct node *n, u32 cpu, u32 iter, u32 r)
{
    n->payload = cpu * 0x10001u + iter;
    for (u32 k = r >> 28; k; k--)          /* 0..15 rounds of "work" */
        n->payload = n->payload * 33 + k;
    percpu[cpu].checksum += n->payload;
}

__attribute__((noinline)) void node_release(struct node *n, u32 cpu)
{
    u32 was = cmpxchg(&n->owner, cpu, NOBODY);
    if (was != cpu) {
        panic_begin(cpu, "node_release");
        puts("node ");
        put_dec(n->id);
        puts(" is being freed by its user, but cpu");
        put_dec(was);
        puts(" owns it");
        panic_end();
    }
    percpu[cpu].holding = 0;
    pool_put(n, cpu);
}

__attribute__((noinline)) void cpu_loop(u32 cpu)
{
    struct percpu *me = &percpu[cpu];
    for (u32 i = 0; i < iters; i++) {
        u32 r = xorshift(&me->rng);
        struct node *n;
        if ((r & 3) == 0) {
            n = pool_get_fast(cpu);
            me->fast++;
        } else {
            n = pool_get(cpu);
        }
        node_claim(n, cpu);
        work_on(n, cpu, i, r);
        node_release(n, cpu);
        me->done++;
    }
}

/* Every node back in the pool, each once, none owned. */
__attribute__((noinline)) void pool_check(u32 cpu)
{
    u32 count = 0;
    for (struct node *n = pool; n; n = n->next) {
        u32 off = (u32)n - (u32)nodes;
        if (off >= sizeof nodes || off % sizeof *n || count == NODES || n->owner != NOBODY) {
            panic_begin(cpu, "pool_check");
            puts("pool entry ");
            put_dec(count);
            puts(" is ");
            put_hex((u32)n);
            puts(off >= sizeof nodes || off % sizeof *n ? " (not a node)"
                 : count == NODES ? " (the list has a cycle)" : " (a node that is owned)");
            panic_end();
        }
        count++;
    }
    if (count != NODES) {
        panic_begin(cpu, "pool_check");
        put_dec(count);
        puts(" of ");
        put_dec(NODES);
        puts(" nodes are back in the pool (");
        put_dec(NODES - count);
        puts(" lost)");
        panic_end();
    }
}

/* ------------------------------------------------------------- the crash */
static const struct { const char *name; void *start; } symbols[] = {
    { "pool_get", (void *)pool_get }, { "pool_get_fast", (void *)pool_get_fast },
    { "pool_put", (void *)pool_put }, { "node_claim", (void *)node_claim },
    { "work_on", (void *)work_on }, { "node_release", (void *)node_release },
    { "cpu_loop", (void *)cpu_loop }, { "pool_check", (void *)pool_check },
};

static const char *symbol_for(u32 eip)
{
    const char *best = "?";
    u32 best_start = 0;
    for (u32 i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        u32 s = (u32)symbols[i].start;
        if (s <= eip && s >= best_start) {
            best = symbols[i].name;
            best_start = s;
        }
    }
    return best;
}

/* A triple fault: with an empty IDT, int3 raises #GP, #GP raises #DF, and
 * #DF shuts the processor down. */
static void triple_fault(void) __attribute__((noreturn));
static void triple_fault(void)
{
    static const struct { u16 limit; u32 base; } __attribute__((packed)) no_idt = { 0, 0 };
    __asm__ volatile("cli\n\tlidt %0\n\tint3" : : "m"(no_idt));
    for (;;)
        hlt();
}

static void panic_begin(u32 cpu, const char *fn)
{
    cli();
    if (xchg(&panicking, 1))                /* another CPU is already reporting */
        for (;;)
            hlt();
    for (u32 spins = 0; console.locked && spins < 100000; spins++)
        pause();                            /* let a line being printed finish */
    console.locked = 1;                     /* (and take the console for good) */
    puts("PANIC: ");
    puts(fn);
    puts(" on cpu");
    put_dec(cpu);
    puts(": ");
}

static void panic_end(void)
{
    puts("\n  pool ");
    put_hex((u32)pool);
    for (u32 c = 0; c < ncpus; c++) {
        if (!cpu_is_up(c))
            continue;
        puts(c % 3 ? ", cpu" : "\n  cpu");
        put_dec(c);
        puts(" at iteration ");
        put_dec(percpu[c].done);
        puts(" holding ");
        put_hex((u32)percpu[c].holding);
    }
    puts("\n");
    triple_fault();
}

static void fault(struct trapframe *tf)
{
    u32 cpu = this_cpu();
    panic_begin(cpu, symbol_for(tf->eip));
    if (tf->vector == 14) {
        puts("page fault at ");
        put_hex(read_cr2());
    } else {
        puts("exception ");
        put_dec(tf->vector);
    }
    puts(", error ");
    put_hex(tf->error);
    puts(", eip ");
    put_hex(tf->eip);
    panic_end();
}

/* ------------------------------------------------------------------ setup */
static u32 page_table[2][1024] __attribute__((aligned(4096)));
static u32 apic_table[1024] __attribute__((aligned(4096)));
static u32 page_dir[1024] __attribute__((aligned(4096)));

/* 0..8 MiB identity-mapped but page 0 (and so the poison) unmapped; the
 * local APIC page uncached.  The APs load the same CR3 (smp.c). */
static void paging_on(void)
{
    for (u32 va = 0x1000; va < (8u << 20); va += 4096)
        page_table[va >> 22][(va >> 12) & 1023] = va | 3;
    apic_table[(LAPIC_BASE >> 12) & 1023] = LAPIC_BASE | 0x1B;      /* PCD PWT RW P */
    page_dir[0] = (u32)page_table[0] | 3;
    page_dir[1] = (u32)page_table[1] | 3;
    page_dir[LAPIC_BASE >> 22] = (u32)apic_table | 3;
    write_cr3((u32)page_dir);
    write_cr0(read_cr0() | 0x80010000);    /* PG, WP */
}

static void parse_cmdline(u32 info)
{
    if (!(*(u32 *)info & 4))
        return;
    for (const char *s = (const char *)*(u32 *)(info + 16); *s; s++) {
        if (s[0] == 'i' && s[1] == 't' && s[2] == 'e' && s[3] == 'r' && s[4] == 's' && s[5] == '=') {
            iters = 0;
            for (s += 6; *s >= '0' && *s <= '9'; s++)
                iters = iters * 10 + (u32)(*s - '0');
            s--;
        } else if (s[0] == 'f' && s[1] == 'i' && s[2] == 'x' && s[3] == 'e' && s[4] == 'd') {
            fixed = 1;
            s += 4;
        }
    }
}

void ap_main(u32 id)
{
    while (!go)
        pause();
    cpu_loop(id);
    atomic_add(&finished, 1);
    for (;;) {
        cli();
        hlt();
    }
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    serial_init();
    parse_cmdline(info);
    x86_init();
    for (int v = 0; v < 32; v++)
        set_trap_handler(v, fault);
    smp_find_cpus();
    puts("smprace: ");
    put_dec(ncpus);
    puts(ncpus == 1 ? " processor (APIC id" : " processors (APIC ids");
    for (u32 c = 0; c < ncpus; c++) {
        puts(" ");
        put_dec(cpu_apic_id[c]);
    }
    puts("), ");
    put_dec(iters);
    puts(fixed ? " iterations each, fixed: pool_get_fast takes the lock\n"
               : " iterations each\n");
    paging_on();
    for (u32 i = 0; i < NODES; i++) {
        nodes[i].id = i;
        nodes[i].owner = NOBODY;
        nodes[i].next = pool;
        pool = &nodes[i];
    }
    for (u32 c = 0; c < MAX_CPUS; c++)
        percpu[c].rng = (c + 1) * 2654435761u ^ 0x9E3779B9u;
    running = smp_start_aps();
    go = 1;
    cpu_loop(0);
    atomic_add(&finished, 1);
    while (finished < running)
        pause();
    pool_check(0);
    u32 done = 0, fast = 0, checksum = 0;
    for (u32 c = 0; c < ncpus; c++) {
        done += percpu[c].done;
        fast += percpu[c].fast;
        checksum += percpu[c].checksum;
    }
    spin_lock(&console, 0);
    puts("smprace: ");
    put_dec(running);
    puts(running == 1 ? " cpu: " : " cpus: ");
    put_dec(done);
    puts(" nodes handed out (");
    put_dec(fast);
    puts(" on the fast path), all ");
    put_dec(NODES);
    puts(" back in the pool, checksum ");
    put_hex(checksum);
    puts("\nsmprace: ok\n");
    spin_unlock(&console);
    cli();
    for (;;)
        hlt();
}
