/* flaky: a kernel with a real, intermittent bug — the reason kernel
 * developers need a debugger that can stop time.
 *
 * The kernel keeps a work queue: a singly linked list of requests.  The
 * main loop submits requests (list_push); the timer interrupt completes the
 * queued requests (it pops them from the head) and frees them, poisoning each freed node's
 * link with 0xdead0000 + 16 * its index, as a careful kernel does to catch
 * use after free.
 *
 * THE BUG is in list_push():
 *
 *     n->next = head;          // (1)
 *     account(n, r);           //     some bookkeeping, occasionally slow
 *     head = n;                // (2)
 *
 * with interrupts enabled.  If the timer interrupt lands between (1) and
 * (2), it pops and frees the old head, but n->next still points at it; (2)
 * then links the freed node back into the queue.  A later pop follows its
 * poisoned pointer and the kernel dies with a page fault at 0xdead....
 * Whether the interrupt ever lands in that window depends on how long each
 * iteration takes, which depends on the seed given on the command line
 * (`seed=N`): for a given seed the run is exactly reproducible under tvmm
 * (guest time is the instruction count), for different seeds it crashes
 * after a different number of iterations, or not at all.
 *
 * THE FIX: make (1)..(2) atomic with respect to the interrupt — cli before
 * (1), sti after (2) (`flaky.c: list_push`, or the command-line flag
 * `fixed`, which takes exactly that path).
 *
 * Debugging it with gdb: break on oops(), `bt`; or watch `head` and
 * continue until the write that links a poisoned node.
 */
#include "../lib/x86.h"

#define NODES       48
#define ITERATIONS  1000
#define POISON      0xDEAD0000u
#define PIT_HZ      5000                     /* one tick every 20000 instructions under tvmm */

struct node {
    struct node *next;                       /* the work queue's link */
    struct node *free_next;                  /* the free list's link */
    u32 id, payload;
};

static struct node nodes[NODES];
static struct node *free_list;
static struct node *volatile head;          /* the work queue */
static u32 rng, seed, fixed, completed, submitted, ticks;
static volatile u32 slow_accounting;

static u32 xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static struct node *node_alloc(void)
{
    struct node *n = free_list;
    if (n)
        free_list = n->free_next;
    return n;
}

static void node_free(struct node *n)
{
    n->payload = 0;
    n->next = (struct node *)(POISON + (u32)(n - nodes) * 16);   /* catch use after free */
    n->free_next = free_list;
    free_list = n;
}

/* Bookkeeping between the two stores: a couple of instructions, now and
 * then (as the seed's random stream says) a slower path. */
static inline __attribute__((always_inline)) void account(struct node *n, u32 r)
{
    n->payload = r;
    if ((r & 0xFF) == 0)
        for (u32 i = 0; i < (r >> 27); i++)
            slow_accounting += i;
}

__attribute__((noinline)) void list_push(struct node *n)
{
    u32 r = xorshift();
    if (fixed)
        cli();
    n->next = head;                          /* (1) */
    account(n, r);
    head = n;                                /* (2)  <- the window is (1)..(2) */
    if (fixed)
        sti();
    submitted++;
}

/* The "completion" interrupt: complete every queued request, newest first,
 * and free it. */
__attribute__((noinline)) void timer_interrupt(struct trapframe *tf)
{
    (void)tf;
    ticks++;
    struct node *n;
    while ((n = head) != 0) {
        head = n->next;                      /* a poisoned pointer, after the race */
        node_free(n);
        completed++;
    }
    pic_eoi(0);
}

__attribute__((noinline)) u32 list_length(void)
{
    u32 len = 0;
    for (struct node *n = head; n; n = n->next)
        len++;
    return len;
}

/* ---------------------------------------------------------------- the oops */
static const struct { const char *name; void *start; } symbols[] = {
    { "list_push", (void *)list_push },
    { "timer_interrupt", (void *)timer_interrupt }, { "list_length", (void *)list_length },
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

static void oops(struct trapframe *tf)
{
    cli();
    puts("BUG: unable to handle page fault at ");
    put_hex(read_cr2());
    puts(", error ");
    put_hex(tf->error);
    puts(", eip ");
    put_hex(tf->eip);
    puts(" (in ");
    puts(symbol_for(tf->eip));
    puts(")\n");
    puts("  eax ");
    put_hex(tf->eax);
    puts(" ebx ");
    put_hex(tf->ebx);
    puts(" ecx ");
    put_hex(tf->ecx);
    puts(" edx ");
    put_hex(tf->edx);
    puts(" esp ");
    put_hex(tf->esp_dummy);
    puts("\n  after ");
    put_dec(submitted);
    puts(" requests, ");
    put_dec(ticks);
    puts(" timer ticks\n");
    qemu_exit(1);                            /* tvmm exit status 3 */
    for (;;)
        hlt();
}

/* ------------------------------------------------------------------- setup */
static u32 page_table[2][1024] __attribute__((aligned(4096)));
static u32 page_dir[1024] __attribute__((aligned(4096)));

static void paging_on(void)
{
    for (u32 va = 0x1000; va < (8u << 20); va += 4096)     /* page 0 stays unmapped */
        page_table[va >> 22][(va >> 12) & 1023] = va | 3;
    page_dir[0] = (u32)page_table[0] | 3;
    page_dir[1] = (u32)page_table[1] | 3;
    write_cr3((u32)page_dir);
    write_cr0(read_cr0() | 0x80010000);
}

static void parse_cmdline(u32 info)
{
    seed = 1;
    if (*(u32 *)info & 4) {
        const char *s = (const char *)*(u32 *)(info + 16);
        for (; *s; s++) {
            if (s[0] == 's' && s[1] == 'e' && s[2] == 'e' && s[3] == 'd' && s[4] == '=') {
                seed = 0;
                for (s += 5; *s >= '0' && *s <= '9'; s++)
                    seed = seed * 10 + (u32)(*s - '0');
                s--;
            } else if (s[0] == 'f' && s[1] == 'i' && s[2] == 'x' && s[3] == 'e' && s[4] == 'd') {
                fixed = 1;
                s += 4;
            }
        }
    }
    puts("flaky: seed ");
    put_dec(seed);
    puts(fixed ? " (fixed: interrupts off around list_push)\n" : "\n");
    rng = seed * 2654435761u + 0x9E3779B9u;
    if (!rng)
        rng = 1;
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    serial_init();
    parse_cmdline(info);
    x86_init();
    set_trap_handler(14, oops);
    set_trap_handler(IRQ_BASE + 0, timer_interrupt);
    paging_on();
    for (int i = 0; i < NODES; i++) {
        nodes[i].id = (u32)i;
        node_free(&nodes[i]);
    }
    pic_init();
    pit_periodic(PIT_HZ);
    pic_unmask(0);
    sti();
    for (u32 iter = 1; iter <= ITERATIONS; iter++) {
        struct node *n;
        cli();
        n = node_alloc();                    /* the free list is shared with the interrupt: */
        sti();                               /* protected correctly here */
        if (n)
            list_push(n);
        for (u32 spin = xorshift() & 0x3FF; spin; spin--)   /* the rest of the iteration's work */
            __asm__ volatile("");
        if (iter % 200 == 0) {
            cli();
            u32 len = list_length();
            sti();
            puts("flaky: ");
            put_dec(iter);
            puts(" iterations, queue length ");
            put_dec(len);
            puts("\n");
        }
    }
    cli();
    puts("flaky: seed ");
    put_dec(seed);
    puts(" survived ");
    put_dec(ITERATIONS);
    puts(" iterations (");
    put_dec(submitted);
    puts(" requests, ");
    put_dec(completed);
    puts(" completed)\n");
    for (;;)
        hlt();
}
