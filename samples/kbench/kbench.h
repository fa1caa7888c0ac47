/* kbench: kernel-like benchmark workloads for `tvmm bench` (issue 14).
 *
 * Each kernel boots by Multiboot, builds xv6-style 4 KiB page tables
 * (kvmalloc: 0..PHYSTOP identity-mapped, plus the local APIC page), turns
 * paging on, runs its workload's set-up, then jumps to `bench_start`.
 * The timed stretch is bench_start -> bench_done: workload_run(bench_iters)
 * and its result stored in `bench_result`, then `bench_done: cli; hlt`.
 * Nothing in the timed stretch touches an I/O port.
 *
 * Command line: `n=N` sets bench_iters (else the workload's default).
 * The code below follows xv6 (spinlock.c, kalloc.c, vm.c, string.c) closely,
 * identity-mapped instead of at KERNBASE. */
#ifndef KBENCH_H
#define KBENCH_H
#include "../lib/pc.h"
#include "../lib/x86.h"

#define PGSIZE   4096u
#define PTE_P    0x001u
#define PTE_W    0x002u
#define PTE_U    0x004u
#define FL_IF    0x200u
#define PDX(va)  (((u32)(va) >> 22) & 0x3FF)
#define PTX(va)  (((u32)(va) >> 12) & 0x3FF)
#define PTE_ADDR(pte) ((u32)(pte) & ~0xFFFu)
#define PGROUNDUP(sz)   (((sz) + PGSIZE - 1) & ~(PGSIZE - 1))
#define PGROUNDDOWN(a)  ((a) & ~(PGSIZE - 1))
#define PHYSTOP  (224u << 20)                    /* as xv6's memlayout.h */
#define POOL_START (4u << 20)                    /* kalloc's pages: [4 MiB, 8 MiB) */
#define POOL_END   (8u << 20)

typedef u32 pte_t;
typedef u32 pde_t;

/* spinlock.c */
struct cpu {
    u8 apicid;
    int ncli;                 /* depth of pushcli nesting */
    int intena;               /* were interrupts enabled before pushcli? */
};
struct spinlock {
    u32 locked;
    const char *name;
    struct cpu *cpu;
    u32 pcs[10];
};
void initlock(struct spinlock *lk, const char *name);
void acquire(struct spinlock *lk);
void release(struct spinlock *lk);
int holding(struct spinlock *lk);
void pushcli(void);
void popcli(void);
struct cpu *mycpu(void);

/* string.c */
void *memset(void *dst, int c, u32 n);
void *memmove(void *dst, const void *src, u32 n);
void *memcpy(void *dst, const void *src, u32 n);

/* kalloc.c */
char *kalloc(void);
void kfree(char *v);

/* vm.c */
extern pde_t *kpgdir;
pte_t *walkpgdir(pde_t *pgdir, const void *va, int alloc);
int mappages(pde_t *pgdir, void *va, u32 size, u32 pa, u32 perm);

/* the benchmark frame */
extern u32 bench_iters;
extern volatile u32 bench_result;
void bench_finish(u32 result) __attribute__((noreturn));   /* store the result, go to bench_done */

/* one per workload: the default iteration count, the (untimed) set-up
 * before paging is on, and the timed part */
extern const u32 workload_default_iters;
void workload_setup(void);
u32 workload_run(u32 iters);

#endif
