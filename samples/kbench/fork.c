/* fork: xv6's copyuvm.  A source address space of NPAGES user pages (at
 * UBASE, below the kernel's identity map in the same page directory) is
 * built once; each iteration makes a new page directory sharing the
 * kernel's page tables, walks the source, allocates, memmoves each 4 KiB
 * page and maps it (copyuvm), reads one word of each copy through the new
 * page tables, then frees it all (freevm).
 * Result: the sum of the words read (see tests/test_bench_kernels.py). */
#include "kbench.h"

#define NPAGES 64
#define UBASE  0x40000000u
#define KPDES  (PHYSTOP >> 22)                  /* the kernel's page tables, shared */

const u32 workload_default_iters = 2;

static pde_t *srcpgdir;

static pde_t *setupuvm(void)
{
    pde_t *pgdir = (pde_t *)kalloc();
    if (!pgdir)
        panic("setupuvm");
    memset(pgdir, 0, PGSIZE);
    for (u32 i = 0; i < KPDES; i++)
        pgdir[i] = kpgdir[i];
    pgdir[PDX(LAPIC_BASE)] = kpgdir[PDX(LAPIC_BASE)];
    return pgdir;
}

void workload_setup(void)
{
    srcpgdir = setupuvm();
    for (u32 i = 0; i < NPAGES; i++) {
        u32 *mem = (u32 *)kalloc();
        if (!mem)
            panic("setup: out of memory");
        for (u32 j = 0; j < PGSIZE / 4; j++)
            mem[j] = (i << 16) ^ (j * 2654435761u);
        mappages(srcpgdir, (void *)(UBASE + i * PGSIZE), PGSIZE, (u32)mem, PTE_W | PTE_U);
    }
}

static pde_t *copyuvm(pde_t *pgdir, u32 sz)
{
    pde_t *d = setupuvm();
    for (u32 i = 0; i < sz; i += PGSIZE) {
        pte_t *pte = walkpgdir(pgdir, (void *)(UBASE + i), 0);
        if (!pte)
            panic("copyuvm: pte should exist");
        if (!(*pte & PTE_P))
            panic("copyuvm: page not present");
        u32 pa = PTE_ADDR(*pte), flags = *pte & 0xFFF;
        char *mem = kalloc();
        if (!mem)
            panic("copyuvm: out of memory");
        memmove(mem, (char *)pa, PGSIZE);
        if (mappages(d, (void *)(UBASE + i), PGSIZE, (u32)mem, flags) < 0)
            panic("copyuvm: mappages");
    }
    return d;
}

/* deallocuvm + freevm, for the user part only (kernel tables are shared) */
static void freevm(pde_t *pgdir, u32 sz)
{
    for (u32 a = UBASE; a < UBASE + sz; a += PGSIZE) {
        pte_t *pte = walkpgdir(pgdir, (void *)a, 0);
        if (pte && (*pte & PTE_P)) {
            kfree((char *)PTE_ADDR(*pte));
            *pte = 0;
        }
    }
    for (u32 i = KPDES; i < 1024; i++)
        if ((pgdir[i] & PTE_P) && i != PDX(LAPIC_BASE))
            kfree((char *)PTE_ADDR(pgdir[i]));
    kfree((char *)pgdir);
}

u32 workload_run(u32 iters)
{
    u32 sum = 0;
    for (u32 r = 0; r < iters; r++) {
        pde_t *d = copyuvm(srcpgdir, NPAGES * PGSIZE);
        for (u32 i = 0; i < NPAGES; i++) {
            u32 *page = (u32 *)PTE_ADDR(*walkpgdir(d, (void *)(UBASE + i * PGSIZE), 0));
            sum += page[(i * 17 + r) & 1023];
        }
        freevm(d, NPAGES * PGSIZE);
    }
    return sum;
}
