/* kbench's shared kernel: boot, xv6's spinlocks, kalloc, vm and string
 * functions, and the bench_start / bench_done frame (see kbench.h). */
#include "kbench.h"

u32 bench_iters;
volatile u32 bench_result;
pde_t *kpgdir;

/* ------------------------------------------------------------ spinlock.c */
volatile u32 *lapic = (volatile u32 *)LAPIC_BASE;   /* xv6: set by mpinit */
#define ID (0x20 / 4)
#define NCPU 8
struct cpu cpus[NCPU];
int ncpu = 1;

static inline u32 readeflags(void)
{
    u32 eflags;
    __asm__ volatile("pushfl; popl %0" : "=r"(eflags));
    return eflags;
}

static inline u32 xchg(volatile u32 *addr, u32 newval)
{
    u32 result;
    __asm__ volatile("lock; xchgl %0, %1" : "+m"(*addr), "=a"(result) : "1"(newval) : "cc");
    return result;
}

static int lapicid(void)
{
    if (!lapic)
        return 0;
    return lapic[ID] >> 24;
}

struct cpu *mycpu(void)
{
    int apicid, i;
    if (readeflags() & FL_IF)
        panic("mycpu called with interrupts enabled");
    apicid = lapicid();
    for (i = 0; i < ncpu; ++i)
        if (cpus[i].apicid == apicid)
            return &cpus[i];
    panic("unknown apicid");
}

void pushcli(void)
{
    int eflags = readeflags();
    cli();
    if (mycpu()->ncli == 0)
        mycpu()->intena = eflags & FL_IF;
    mycpu()->ncli += 1;
}

void popcli(void)
{
    if (readeflags() & FL_IF)
        panic("popcli - interruptible");
    if (--mycpu()->ncli < 0)
        panic("popcli");
    if (mycpu()->ncli == 0 && mycpu()->intena)
        sti();
}

void initlock(struct spinlock *lk, const char *name)
{
    lk->name = name;
    lk->locked = 0;
    lk->cpu = 0;
}

/* Record the current call stack in pcs[] by following the %ebp chain. */
static void getcallerpcs(void *v, u32 pcs[])
{
    u32 *ebp = (u32 *)v - 2;
    int i;
    for (i = 0; i < 10; i++) {
        if (ebp == 0 || ebp < (u32 *)0x100000 || ebp == (u32 *)0xffffffff)
            break;
        pcs[i] = ebp[1];
        ebp = (u32 *)ebp[0];
    }
    for (; i < 10; i++)
        pcs[i] = 0;
}

int holding(struct spinlock *lock)
{
    int r;
    pushcli();
    r = lock->locked && lock->cpu == mycpu();
    popcli();
    return r;
}

void acquire(struct spinlock *lk)
{
    pushcli();
    if (holding(lk))
        panic("acquire");
    while (xchg(&lk->locked, 1) != 0)
        ;
    __sync_synchronize();
    lk->cpu = mycpu();
    getcallerpcs(&lk, lk->pcs);
}

void release(struct spinlock *lk)
{
    if (!holding(lk))
        panic("release");
    lk->pcs[0] = 0;
    lk->cpu = 0;
    __sync_synchronize();
    __asm__ volatile("movl $0, %0" : "+m"(lk->locked) :);
    popcli();
}

/* -------------------------------------------------------------- string.c */
static inline void stosb(void *addr, int data, int cnt)
{
    __asm__ volatile("cld; rep stosb" : "=D"(addr), "=c"(cnt) : "0"(addr), "1"(cnt), "a"(data) : "memory", "cc");
}

static inline void stosl(void *addr, int data, int cnt)
{
    __asm__ volatile("cld; rep stosl" : "=D"(addr), "=c"(cnt) : "0"(addr), "1"(cnt), "a"(data) : "memory", "cc");
}

void *memset(void *dst, int c, u32 n)
{
    if ((int)dst % 4 == 0 && n % 4 == 0) {
        c &= 0xFF;
        stosl(dst, (c << 24) | (c << 16) | (c << 8) | c, n / 4);
    } else
        stosb(dst, c, n);
    return dst;
}

void *memmove(void *dst, const void *src, u32 n)
{
    const char *s = src;
    char *d = dst;
    if (s < d && s + n > d) {
        s += n;
        d += n;
        while (n-- > 0)
            *--d = *--s;
    } else
        while (n-- > 0)
            *d++ = *s++;
    return dst;
}

void *memcpy(void *dst, const void *src, u32 n) { return memmove(dst, src, n); }

/* -------------------------------------------------------------- kalloc.c */
struct run { struct run *next; };
static struct {
    struct spinlock lock;
    int use_lock;
    struct run *freelist;
} kmem;

void kfree(char *v)
{
    struct run *r;
    if ((u32)v % PGSIZE || (u32)v < POOL_START || (u32)v >= POOL_END)
        panic("kfree");
    memset(v, 1, PGSIZE);                    /* fill with junk to catch dangling refs */
    if (kmem.use_lock)
        acquire(&kmem.lock);
    r = (struct run *)v;
    r->next = kmem.freelist;
    kmem.freelist = r;
    if (kmem.use_lock)
        release(&kmem.lock);
}

char *kalloc(void)
{
    struct run *r;
    if (kmem.use_lock)
        acquire(&kmem.lock);
    r = kmem.freelist;
    if (r)
        kmem.freelist = r->next;
    if (kmem.use_lock)
        release(&kmem.lock);
    return (char *)r;
}

static void kinit(void)
{
    initlock(&kmem.lock, "kmem");
    /* as kinit1's freerange, without the junk fill (set-up time only) */
    for (u32 p = POOL_END - PGSIZE; p >= POOL_START; p -= PGSIZE) {
        struct run *r = (struct run *)p;
        r->next = kmem.freelist;
        kmem.freelist = r;
    }
}

/* ------------------------------------------------------------------ vm.c */
pte_t *walkpgdir(pde_t *pgdir, const void *va, int alloc)
{
    pde_t *pde = &pgdir[PDX(va)];
    pte_t *pgtab;
    if (*pde & PTE_P) {
        pgtab = (pte_t *)PTE_ADDR(*pde);
    } else {
        if (!alloc || (pgtab = (pte_t *)kalloc()) == 0)
            return 0;
        memset(pgtab, 0, PGSIZE);
        *pde = (u32)pgtab | PTE_P | PTE_W | PTE_U;
    }
    return &pgtab[PTX(va)];
}

int mappages(pde_t *pgdir, void *va, u32 size, u32 pa, u32 perm)
{
    char *a = (char *)PGROUNDDOWN((u32)va);
    char *last = (char *)PGROUNDDOWN((u32)va + size - 1);
    pte_t *pte;
    for (;;) {
        if ((pte = walkpgdir(pgdir, a, 1)) == 0)
            return -1;
        if (*pte & PTE_P)
            panic("remap");
        *pte = pa | perm | PTE_P;
        if (a == last)
            break;
        a += PGSIZE;
        pa += PGSIZE;
    }
    return 0;
}

/* setupkvm + kvmalloc: the kernel's own address space, 4 KiB pages */
static void kvmalloc(void)
{
    kpgdir = (pde_t *)kalloc();
    memset(kpgdir, 0, PGSIZE);
    if (mappages(kpgdir, 0, PHYSTOP, 0, PTE_W) < 0 ||
        mappages(kpgdir, (void *)LAPIC_BASE, PGSIZE, LAPIC_BASE, PTE_W) < 0)
        panic("kvmalloc");
}

/* ------------------------------------------------------------- the frame */
/* bench_start: the first instruction timed.  %ebp = 0 ends getcallerpcs'
 * walk the same way wherever the kernel was booted. */
__asm__(".text\n"
        ".globl bench_start\n"
        "bench_start:\n"
        "    xorl %ebp, %ebp\n"
        "    pushl bench_iters\n"
        "    call workload_run\n"
        "    movl %eax, bench_result\n"
        ".globl bench_done\n"
        "bench_done:\n"
        "    cli\n"
        "    hlt\n"
        "    jmp bench_done\n");

void bench_finish(u32 result)
{
    bench_result = result;
    __asm__ volatile("jmp bench_done");
    __builtin_unreachable();
}

static u32 parse_n(u32 info)
{
    if (!info || !(*(u32 *)info & (1 << 2)))
        return 0;
    const char *s = (const char *)*(u32 *)(info + 16);
    for (; *s; s++) {
        if (s[0] == 'n' && s[1] == '=') {
            u32 v = 0;
            for (s += 2; *s >= '0' && *s <= '9'; s++)
                v = v * 10 + (u32)(*s - '0');
            return v;
        }
    }
    return 0;
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    bench_iters = parse_n(info);
    if (!bench_iters)
        bench_iters = workload_default_iters;
    kinit();
    kvmalloc();
    workload_setup();
    kmem.use_lock = 1;                       /* as after xv6's kinit2 */
    write_cr3((u32)kpgdir);
    write_cr0(read_cr0() | 0x80010000u);     /* PG | WP */
    __asm__ volatile("jmp bench_start");
    __builtin_unreachable();
}
