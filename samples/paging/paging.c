/* paging: two-level paging with ring-3 tasks in address spaces of their own.
 *
 * What it demonstrates (and what a trap-and-emulate monitor must get right
 * underneath it):
 *  - the kernel turns paging on: 0..8 MiB identity-mapped for the kernel
 *    (supervisor only, 4 KiB pages), page 0 left unmapped so NULL faults;
 *  - four user tasks, each with its OWN page directory (kernel half shared,
 *    user half private): the same user address 0x50000000 holds different
 *    data in each task, and every task switch loads CR3;
 *  - system calls through `int $0x80` (a DPL-3 gate): write, yield, exit;
 *    the kernel checks user pointers before using them;
 *  - its own page-fault handler: demand-zero heap pages (a task's first
 *    touch of its heap gets a fresh zeroed frame and resumes), and
 *    protection faults it reports with CR2 and the error code's P/W/U bits,
 *    killing the task but not the others;
 *  - a general-protection fault from a user `outb` (no I/O permission at
 *    CPL 3), reported and killed the same way.
 * The user program runs from the kernel image's `.user` pages, which the
 * kernel maps read-only and user-accessible.
 */
#include "../lib/x86.h"

#define KERNEL_MAP_END  (8u << 20)          /* identity-mapped for the kernel */
#define FRAMES_START    (4u << 20)          /* physical frames handed out from here */
#define USER_HEAP       0x50000000u         /* demand-zero, private */
#define USER_HEAP_PAGES 16
#define USER_STACK_TOP  0x7FFFF000u         /* one private page below this */
#define NTASKS 4

#define PTE_P 1u
#define PTE_W 2u
#define PTE_U 4u

enum { SYS_WRITE = 1, SYS_YIELD = 2, SYS_EXIT = 3, SYS_GETID = 4 };

/* ------------------------------------------------------------------ frames */
static u32 next_frame = FRAMES_START;

static u32 alloc_frame(void)
{
    u32 f = next_frame;
    next_frame += 4096;
    if (next_frame > KERNEL_MAP_END)
        panic("out of frames");
    u32 *p = (u32 *)f;                      /* identity-mapped: the kernel can zero it */
    for (int i = 0; i < 1024; i++)
        p[i] = 0;
    return f;
}

/* --------------------------------------------------------------- page maps */
static u32 kernel_pt[2][1024] __attribute__((aligned(4096)));   /* 0..8 MiB */
extern char __user_start[], __user_end[];

static void map(u32 *pd, u32 va, u32 pa, u32 flags)
{
    u32 *pde = &pd[va >> 22];
    if (!(*pde & PTE_P))
        *pde = alloc_frame() | PTE_P | PTE_W | PTE_U;
    u32 *pt = (u32 *)(*pde & ~0xFFFu);
    pt[(va >> 12) & 1023] = (pa & ~0xFFFu) | flags;
}

static u32 *new_address_space(void)
{
    u32 *pd = (u32 *)alloc_frame();
    pd[0] = (u32)kernel_pt[0] | PTE_P | PTE_W | PTE_U;   /* shared kernel tables: */
    pd[1] = (u32)kernel_pt[1] | PTE_P | PTE_W | PTE_U;   /* U here, decided per page */
    return pd;
}

static void kernel_map_init(void)
{
    for (u32 va = 0x1000; va < KERNEL_MAP_END; va += 4096)
        kernel_pt[va >> 22][(va >> 12) & 1023] = va | PTE_P | PTE_W;
    for (u32 va = (u32)__user_start; va < (u32)__user_end; va += 4096)
        kernel_pt[va >> 22][(va >> 12) & 1023] = va | PTE_P | PTE_U;   /* user code: read-only */
}

/* -------------------------------------------------------------------- tasks */
enum { UNUSED, RUNNABLE, DONE };

struct task {
    int id, state, killed;
    u32 *pd;
    struct trapframe *tf;                   /* saved on its kernel stack */
    u32 kstack[1024] __attribute__((aligned(16)));
};

static struct task tasks[NTASKS];
static struct task *cur;
static u32 demand_faults, killed;

static void start_frame(struct task *t, void (*entry)(void))
{
    struct trapframe *tf = (struct trapframe *)((u32)&t->kstack[1024] - sizeof *tf);
    for (u32 *p = (u32 *)tf; p < (u32 *)(tf + 1); p++)
        *p = 0;
    tf->ds = tf->es = tf->fs = tf->gs = SEG_UDATA;
    tf->cs = SEG_UCODE;
    tf->user_ss = SEG_UDATA;
    tf->eip = (u32)entry;
    tf->user_esp = USER_STACK_TOP;
    tf->eflags = 0x202;
    tf->eax = t->id;                        /* the task's argument */
    t->tf = tf;
}

static struct trapframe *run_next(void)
{
    for (int i = 1; i <= NTASKS; i++) {
        struct task *t = &tasks[(cur->id - 1 + i) % NTASKS];
        if (t->state == RUNNABLE) {
            cur = t;
            set_kernel_stack((u32)&t->kstack[1024]);
            write_cr3((u32)t->pd);
            return t->tf;
        }
    }
    puts("paging: ");
    put_dec(NTASKS);
    puts(" tasks, ");
    put_dec(demand_faults);
    puts(" demand-zero faults, ");
    put_dec(killed);
    puts(" killed, all done\n");
    cli();
    for (;;)
        hlt();
}

static void kill(const char *why, struct trapframe *tf, u32 err)
{
    puts("task ");
    put_dec(cur->id);
    puts(": ");
    puts(why);
    if (tf->vector == 14) {
        puts(" at ");
        put_hex(read_cr2());
    } else {
        puts(" at eip ");
        put_hex(tf->eip);
    }
    puts(" (error ");
    put_hex(err);
    if (tf->vector == 14) {
        puts(err & 1 ? ": present" : ": not present");
        puts(err & 2 ? ", write" : ", read");
        puts(err & 4 ? ", user" : ", supervisor");
    }
    puts(") - killed\n");
    cur->state = DONE;
    killed++;
    trap_switch(run_next());
}

/* --------------------------------------------------------------- handlers */
static void page_fault(struct trapframe *tf)
{
    u32 va = read_cr2();
    if (!(tf->cs & 3))
        panic("page fault in the kernel");
    if (!(tf->error & PTE_P) && va >= USER_HEAP && va < USER_HEAP + USER_HEAP_PAGES * 4096) {
        map(cur->pd, va, alloc_frame(), PTE_P | PTE_W | PTE_U);   /* demand zero */
        demand_faults++;
        return;                              /* the instruction runs again */
    }
    kill("protection fault", tf, tf->error);
}

static void general_protection(struct trapframe *tf)
{
    if (!(tf->cs & 3))
        panic("general protection fault in the kernel");
    kill("general protection fault", tf, tf->error);
}

static int user_range_ok(u32 p, u32 len)
{
    return len < 4096 && p >= USER_HEAP && p + len <= USER_STACK_TOP && p + len >= p;
}

static void syscall(struct trapframe *tf)
{
    switch (tf->eax) {
    case SYS_WRITE:
        /* user text may live in the .user pages or in the task's own memory */
        if (!user_range_ok(tf->ebx, tf->ecx) &&
            !(tf->ebx >= (u32)__user_start && tf->ebx + tf->ecx <= (u32)__user_end)) {
            tf->eax = (u32)-1;
            return;
        }
        for (u32 i = 0; i < tf->ecx; i++) {
            char c = ((const char *)tf->ebx)[i];
            if (c == '\n')
                serial_putc('\r');
            serial_putc(c);
            cga_putc(c);
        }
        tf->eax = tf->ecx;
        return;
    case SYS_GETID:
        tf->eax = cur->id;
        return;
    case SYS_YIELD:
        cur->tf = tf;
        trap_switch(run_next());
        return;
    case SYS_EXIT:
        cur->state = DONE;
        trap_switch(run_next());
        return;
    default:
        tf->eax = (u32)-1;
    }
}

/* -------------------------------------------------------------------- user */
#define USER __attribute__((section(".user.text"), noinline))
#define UDATA __attribute__((section(".user.data")))

static inline __attribute__((always_inline)) u32 sys(u32 n, u32 a, u32 b)
{
    u32 r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b) : "memory");
    return r;
}

static USER u32 u_strlen(const char *s)
{
    u32 n = 0;
    while (s[n])
        n++;
    return n;
}

static USER void u_puts(const char *s) { sys(SYS_WRITE, (u32)s, u_strlen(s)); }

static USER void u_puthex(u32 v)
{
    char *buf = (char *)(USER_HEAP + 4096 * (USER_HEAP_PAGES - 1));   /* a private scratch page */
    static const char hex[] UDATA = "0123456789abcdef";
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 8; i++)
        buf[2 + i] = hex[(v >> (28 - 4 * i)) & 15];
    buf[10] = 0;
    u_puts(buf);
}

static const char s_task[] UDATA = "task ";
static const char s_sees[] UDATA = ": heap word at 0x50000000 reads ";
static const char s_zero[] UDATA = ": fresh heap page reads zero, checksum ";
static const char s_bad[] UDATA = ": fresh heap page NOT zero\n";
static const char s_nl[] UDATA = "\n";
static const char s_rogue[] UDATA = ": about to misbehave\n";

static USER void u_task_says(u32 id, const char *what)
{
    char *line = (char *)(USER_HEAP + 4096 * (USER_HEAP_PAGES - 2));
    line[0] = (char)('0' + id);
    line[1] = 0;
    u_puts(s_task);
    u_puts(line);
    u_puts(what);
}

static USER void u_task_line(u32 id, const char *what, u32 v)
{
    u_task_says(id, what);
    u_puthex(v);
    u_puts(s_nl);
}

/* Every task: write its id into its private heap, yield (another address
 * space runs), read it back; sum a few demand-zero pages.  Tasks 3 and 4
 * then misbehave in different ways. */
static USER void user_main(void)
{
    u32 id = sys(SYS_GETID, 0, 0);
    volatile u32 *heap = (volatile u32 *)USER_HEAP;
    heap[0] = 0x1000 * id + 0xAB;
    sys(SYS_YIELD, 0, 0);
    u_task_line(id, s_sees, heap[0]);
    u32 sum = 0;
    for (u32 page = 1; page < 1 + id; page++) {
        volatile u32 *p = (volatile u32 *)(USER_HEAP + page * 4096);
        for (int i = 0; i < 1024; i += 64)
            if (p[i] != 0) {
                u_puts(s_bad);
                sys(SYS_EXIT, 1, 0);
            }
        for (int i = 0; i < 1024; i++)
            p[i] = i * id + page;
        for (int i = 0; i < 1024; i++)
            sum += p[i];
    }
    u_task_line(id, s_zero, sum);
    sys(SYS_YIELD, 0, 0);
    if (id == 2) {
        u_task_says(id, s_rogue);
        *(volatile u32 *)((u32)__user_start + 0x10) = 0;     /* its code is read-only */
    }
    if (id == 3) {
        u_task_says(id, s_rogue);
        __asm__ volatile("outb %%al, $0x80" : : "a"(0));     /* no I/O at CPL 3 */
    }
    if (id == 4) {
        u_task_says(id, s_rogue);
        (void)*(volatile u32 *)0x00100000;                   /* kernel memory */
    }
    sys(SYS_EXIT, 0, 0);
}

/* ------------------------------------------------------------------- kmain */
void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    serial_init();
    puts("paging: turning paging on, ");
    put_dec(NTASKS);
    puts(" user tasks\n");
    x86_init();
    set_trap_handler(14, page_fault);
    set_trap_handler(13, general_protection);
    set_trap_handler(T_SYSCALL, syscall);
    kernel_map_init();
    for (int i = 0; i < NTASKS; i++) {
        struct task *t = &tasks[i];
        t->id = i + 1;
        t->state = RUNNABLE;
        t->pd = new_address_space();
        map(t->pd, USER_STACK_TOP - 4096, alloc_frame(), PTE_P | PTE_W | PTE_U);
        start_frame(t, user_main);
    }
    cur = &tasks[0];
    write_cr3((u32)cur->pd);
    write_cr0(read_cr0() | 0x80010000);     /* PG, WP */
    set_kernel_stack((u32)&cur->kstack[1024]);
    trap_resume(cur->tf);
}
