/* mappages: xv6's setupkvm page-table builder.  Each iteration allocates a
 * page directory (kalloc + memset) and maps 224 MiB (PHYSTOP) with 4 KiB
 * pages at KERNBASE through walkpgdir/mappages, which allocate and zero the
 * 56 page tables; every iteration but the last frees them again (freevm).
 * Result: the last page directory (left mapped, for checking). */
#include "kbench.h"

#define KERNBASE 0x80000000u

const u32 workload_default_iters = 2;

void workload_setup(void) {}

static void freevm(pde_t *pgdir)
{
    for (u32 i = 0; i < 1024; i++)
        if (pgdir[i] & PTE_P)
            kfree((char *)PTE_ADDR(pgdir[i]));
    kfree((char *)pgdir);
}

u32 workload_run(u32 iters)
{
    pde_t *pgdir = 0;
    for (u32 i = 0; i < iters; i++) {
        if (pgdir)
            freevm(pgdir);
        if ((pgdir = (pde_t *)kalloc()) == 0)
            panic("out of memory");
        memset(pgdir, 0, PGSIZE);
        if (mappages(pgdir, (void *)KERNBASE, PHYSTOP, 0, PTE_W) < 0)
            panic("mappages");
    }
    return (u32)pgdir;
}
