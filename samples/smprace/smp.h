/* The multiprocessor plumbing of the smprace sample (smp.c): finding the
 * processors in the Intel MP table, starting the application processors,
 * atomics and spinlocks. */
#ifndef SMPRACE_SMP_H
#define SMPRACE_SMP_H
#include "../lib/x86.h"

#define MAX_CPUS 16

#define LAPIC_ID    0x20
#define LAPIC_SVR   0xF0
#define LAPIC_ICRLO 0x300
#define LAPIC_ICRHI 0x310

extern u32 ncpus;                          /* processors found (the BSP is cpu 0) */
extern u8 cpu_apic_id[MAX_CPUS];           /* cpu index -> local APIC ID */

/* Reads the MP table; sets ncpus and cpu_apic_id[] (one CPU if there is no
 * table).  Call with paging off or the table identity-mapped. */
void smp_find_cpus(void);
/* INIT / STARTUP / STARTUP for every AP in turn; each runs ap_main(id) on its
 * own stack with the BSP's GDT, IDT, CR3 and CR0.  Returns, once every AP has
 * announced itself or been given up on, how many processors run. */
u32 smp_start_aps(void);
int cpu_is_up(u32 id);
void ap_main(u32 id) __attribute__((noreturn));   /* the sample's AP code */
u32 this_cpu(void);                        /* this processor's index, from its APIC ID */

/* ----------------------------------------------------------------- atomics */
static inline u32 xchg(volatile u32 *p, u32 v)
{
    __asm__ volatile("lock xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}

/* Atomically: if *p == old then *p = new.  Returns what *p was. */
static inline u32 cmpxchg(volatile u32 *p, u32 old, u32 new)
{
    u32 prev;
    __asm__ volatile("lock cmpxchgl %2, %1" : "=a"(prev), "+m"(*p) : "r"(new), "0"(old) : "memory");
    return prev;
}

static inline u32 atomic_add(volatile u32 *p, u32 v)   /* returns the old value */
{
    __asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}

static inline void pause(void) { __asm__ volatile("pause" : : : "memory"); }

struct spinlock {
    volatile u32 locked;
    u32 cpu;                                /* the holder (for the debugger) */
};

static inline void spin_lock(struct spinlock *l, u32 cpu)
{
    while (xchg(&l->locked, 1))
        while (l->locked)
            pause();
    l->cpu = cpu;
}

static inline void spin_unlock(struct spinlock *l)
{
    l->cpu = 0xFFFFFFFF;
    __asm__ volatile("" : : : "memory");
    l->locked = 0;                          /* a plain store releases on x86 */
}

/* The serial console is shared: one line at a time. */
extern struct spinlock console;

#endif
