/* syscall: system calls through an interrupt gate, as xv6 makes them.  A
 * ring-3 loop calls stubs that do `int $64` (a DPL-3 trap gate, T_SYSCALL
 * in xv6) with the number in %eax and the arguments on the user stack.
 * The kernel side is lib/trap.S's common path (xv6's alltraps: push the
 * segments, pushal, load the kernel's data segments, call C), a dispatcher
 * that switches on the number and reads arguments from the user stack
 * (argint), and the way back (popal, pop segments, iret).
 * Each iteration: add(i, sum), and every fourth also getpid().
 * Result: the user's final sum, passed to exit(). */
#include "kbench.h"

#undef T_SYSCALL                  /* lib/x86.h: 0x80; xv6 uses 64 */
#define T_SYSCALL 64
#define SYS_getpid 1
#define SYS_add    2
#define SYS_exit   3

const u32 workload_default_iters = 20000;

/* ---------------------------------------------------------------- user */
#define USER_TEXT __attribute__((section(".user.text"), noinline))
#define USER_DATA __attribute__((section(".user.data")))

int u_getpid(void);
int u_add(u32 a, u32 b);
void u_exit(u32 v) __attribute__((noreturn));
__asm__(".section .user.text, \"ax\"\n"
        "u_getpid: movl $1, %eax; int $64; ret\n"
        "u_add:    movl $2, %eax; int $64; ret\n"
        "u_exit:   movl $3, %eax; int $64; ret\n"
        ".text\n");

USER_DATA u32 user_iters = 1;
USER_DATA __attribute__((aligned(4096))) u8 user_stack[PGSIZE];

USER_TEXT void user_main(void)
{
    u32 sum = 0;
    for (u32 i = 0; i < user_iters; i++) {
        sum = u_add(i, sum);
        if ((i & 3) == 0)
            sum ^= u_getpid();
    }
    u_exit(sum);
}

/* -------------------------------------------------------------- kernel */
static struct proc {
    int pid;
    u32 sz;                   /* user memory: [__user_start, sz) */
    u32 nsyscalls;
    struct trapframe *tf;
} proc = { 7, 0, 0, 0 };

extern char __user_start[], __user_end[];
static u8 kstack[2 * PGSIZE] __attribute__((aligned(16)));

/* fetchint/argint: the n'th 32-bit argument above the user's return address */
static int fetchint(u32 addr, int *ip)
{
    if (addr < (u32)__user_start || addr >= proc.sz || addr + 4 > proc.sz)
        return -1;
    *ip = *(int *)addr;
    return 0;
}

static int argint(int n, int *ip) { return fetchint(proc.tf->user_esp + 4 + 4 * n, ip); }

static int sys_getpid(void) { return proc.pid; }

static int sys_add(void)
{
    int a, b;
    if (argint(0, &a) < 0 || argint(1, &b) < 0)
        return -1;
    return (int)((u32)b * 3 + (u32)a);
}

static int sys_exit(void)
{
    int v;
    if (argint(0, &v) < 0)
        panic("exit: bad argument");
    bench_finish((u32)v);
}

static void syscall(void)
{
    struct trapframe *tf = proc.tf;
    int ret;
    proc.nsyscalls++;
    switch (tf->eax) {
    case SYS_getpid: ret = sys_getpid(); break;
    case SYS_add:    ret = sys_add(); break;
    case SYS_exit:   ret = sys_exit(); break;
    default:
        ret = -1;
        break;
    }
    tf->eax = (u32)ret;
}

static void trap(struct trapframe *tf)
{
    proc.tf = tf;
    syscall();
}

void workload_setup(void)
{
    x86_init();                                  /* GDT with ring-3 segments, TSS, IDT */
    struct { u16 limit; u32 base; } __attribute__((packed)) idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    u32 *gate = (u32 *)idtr.base + 2 * T_SYSCALL;    /* lib's stub, made a DPL-3 trap gate */
    gate[1] = (gate[1] & 0xFFFF0000u) | 0xEF00u;
    set_trap_handler(T_SYSCALL, trap);
    set_kernel_stack((u32)kstack + sizeof kstack);
    for (u32 a = (u32)__user_start; a < (u32)__user_end; a += PGSIZE)
        *walkpgdir(kpgdir, (void *)a, 0) |= PTE_U;
    proc.sz = (u32)__user_end;
}

u32 workload_run(u32 iters)
{
    user_iters = iters;
    /* as lib's enter_user, but with interrupts off in ring 3 (nothing here
     * takes device interrupts) */
    __asm__ volatile("mov %0, %%ds\n\tmov %0, %%es\n\tmov %0, %%fs\n\tmov %0, %%gs\n\t"
                     "pushl %0\n\tpushl %1\n\tpushl $0x002\n\tpushl %2\n\tpushl %3\n\tiret"
                     : : "r"(SEG_UDATA), "r"((u32)user_stack + sizeof user_stack), "i"(SEG_UCODE),
                         "r"((u32)user_main));
    __builtin_unreachable();
}
