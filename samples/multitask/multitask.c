/* multitask: timer-preempted round-robin tasks.
 *
 * What it demonstrates:
 *  - the local APIC: enabled through its spurious-interrupt register, its ID
 *    and version read, TPR 0, and its timer in periodic mode (divide by 16)
 *    preempting the running task: the handler saves the interrupted frame on
 *    the task's own stack and resumes another task's frame — a real context
 *    switch, not a cooperative yield;
 *  - the 8254 PIT on IRQ0 through the 8259A (remapped to vector 32) counting
 *    jiffies, and the APIC timer calibrated against it the way real kernels
 *    do it (count APIC ticks over a few PIT ticks);
 *  - four ring-0 tasks computing checksums with interrupts on, printing
 *    progress tokens (A0 B0 C0 ...) that interleave because of preemption;
 *    an idle `hlt` once a task is done.
 * Under tvmm one virtual second is 100 M instructions, so the rates below
 * give a preemption every 20,000 instructions.  With `forever` on the
 * command line the tasks never finish (the UI's demo).
 */
#include "../lib/x86.h"

#define NTASKS      4
#define ROUNDS      12
#define WORK        3000
#define PIT_HZ      2000                    /* a jiffy every 50,000 instructions under tvmm */
#define PREEMPT_VEC 0x40
#define SPURIOUS    0xFF
#define DIVIDE_16   0x3

#define LAPIC_ID      0x20
#define LAPIC_VERSION 0x30
#define LAPIC_TPR     0x80
#define LAPIC_SVR     0xF0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR  0x390
#define LAPIC_TIMER_DIV  0x3E0

struct task {
    int id, done;
    u32 rounds, checksum;
    struct trapframe *tf;
    u32 stack[1024] __attribute__((aligned(16)));
};

static struct task tasks[NTASKS];
static struct task *cur;
static volatile u32 jiffies, preemptions, tokens;
static u32 apic_per_jiffy;
static int forever;                         /* cmdline "forever": rounds never end (the UI demo) */

/* ------------------------------------------------------------- interrupts */
static void pit_tick(struct trapframe *tf)
{
    (void)tf;
    jiffies++;
    pic_eoi(0);
}

static void summary(void)
{
    puts("\nmultitask: all tasks done\n");
    for (int i = 0; i < NTASKS; i++) {
        puts("  task ");
        serial_putc((char)('A' + i));
        cga_putc((char)('A' + i));
        puts(": ");
        put_dec(tasks[i].rounds);
        puts(" rounds, checksum ");
        put_hex(tasks[i].checksum);
        puts("\n");
    }
    puts("  preemptions ");
    put_dec(preemptions);
    puts(", jiffies ");
    put_dec(jiffies);
    puts("\n");
    cli();
    for (;;)
        hlt();
}

/* The APIC timer: round robin among the tasks that are not done. */
static void preempt(struct trapframe *tf)
{
    lapic_eoi();
    preemptions++;
    cur->tf = tf;
    int all_done = 1;
    for (int i = 1; i <= NTASKS; i++) {
        struct task *t = &tasks[(cur->id + i) % NTASKS];
        if (!t->done) {
            all_done = 0;
            if (t != cur) {
                cur = t;
                trap_switch(t->tf);
            }
            return;
        }
    }
    if (all_done)
        summary();
}

static void spurious(struct trapframe *tf) { (void)tf; }

/* ------------------------------------------------------------------ tasks */
static void token(struct task *t, u32 round)
{
    cli();                                  /* one token at a time on the console */
    char s[5] = { (char)('A' + t->id), (char)('0' + round / 10), (char)('0' + round % 10), ' ', 0 };
    puts(round < 10 ? (s[1] = s[2], s[2] = ' ', s[3] = 0, s) : s);
    if (++tokens % 16 == 0)
        puts("\n");
    sti();
}

static void task_main(void)
{
    struct task *t = cur;                   /* we run only when scheduled as cur */
    u32 acc = (u32)t->id + 1;
    for (u32 round = 0; forever || round < ROUNDS; round++) {
        for (u32 i = 0; i < WORK; i++)
            acc = acc * 31 + i * ((u32)t->id + 1);
        t->rounds = round + 1;
        token(t, round % 100);
    }
    t->checksum = acc;
    t->done = 1;
    for (;;)
        hlt();                              /* idle until the next preemption */
}

static void start_frame(struct task *t)
{
    struct trapframe *tf = (struct trapframe *)((u32)&t->stack[1024] - sizeof *tf);
    for (u32 *p = (u32 *)tf; p < (u32 *)(tf + 1); p++)
        *p = 0;
    tf->ds = tf->es = tf->fs = tf->gs = SEG_KDATA;
    tf->cs = SEG_KCODE;
    tf->eflags = 0x202;
    tf->eip = (u32)task_main;
    t->tf = tf;
}

/* ------------------------------------------------------------------ setup */
static void calibrate(void)
{
    lapic_write(LAPIC_TIMER_DIV, 0xB);      /* divide by 1 */
    lapic_write(LAPIC_LVT_TIMER, 0x10000 | PREEMPT_VEC);   /* masked, one-shot */
    u32 start = jiffies;
    while (jiffies == start)
        hlt();                              /* align to a jiffy */
    lapic_write(LAPIC_TIMER_INIT, 0xFFFFFFFF);
    while (jiffies < start + 5)
        hlt();
    u32 elapsed = 0xFFFFFFFF - lapic_read(LAPIC_TIMER_CUR);
    apic_per_jiffy = elapsed / 4;
    lapic_write(LAPIC_TIMER_INIT, 0);
    puts("multitask: local APIC timer runs ");
    put_dec(apic_per_jiffy);
    puts(" ticks per PIT tick (");
    put_dec((apic_per_jiffy * PIT_HZ + 500000) / 1000000);
    puts(" MHz bus clock)\n");
}

static int has_word(const char *s, const char *w)
{
    for (; *s; s++) {
        int i = 0;
        while (w[i] && s[i] == w[i])
            i++;
        if (!w[i])
            return 1;
    }
    return 0;
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    if (*(u32 *)info & 4)
        forever = has_word((const char *)*(u32 *)(info + 16), "forever");
    serial_init();
    x86_init();
    set_trap_handler(IRQ_BASE + 0, pit_tick);
    set_trap_handler(PREEMPT_VEC, preempt);
    set_trap_handler(SPURIOUS, spurious);
    lapic_write(LAPIC_SVR, 0x100 | SPURIOUS);
    lapic_write(LAPIC_TPR, 0);
    puts("multitask: local APIC id ");
    put_dec(lapic_read(LAPIC_ID) >> 24);
    puts(", version ");
    put_hex(lapic_read(LAPIC_VERSION) & 0xFF);
    puts("\n");
    pic_init();
    pit_periodic(PIT_HZ);
    pic_unmask(0);
    sti();
    calibrate();
    cli();
    for (int i = 0; i < NTASKS; i++) {
        tasks[i].id = i;
        start_frame(&tasks[i]);
    }
    u32 period = apic_per_jiffy * 2 / 5 / 16;    /* 2/5 of a jiffy, divided by 16 */
    lapic_write(LAPIC_TIMER_DIV, DIVIDE_16);
    lapic_write(LAPIC_LVT_TIMER, 0x20000 | PREEMPT_VEC);   /* periodic */
    lapic_write(LAPIC_TIMER_INIT, period);
    puts("multitask: preempting every ");
    put_dec(period * 16);
    puts(" APIC ticks\n");
    cur = &tasks[0];
    trap_resume(cur->tf);
}
