/* lock: xv6's lock-heavy path.  Each iteration acquires a spinlock
 * (pushcli, holding, xchg, getcallerpcs), bumps a counter in the struct it
 * guards and releases it (holding, popcli).  mycpu() reads the local APIC
 * ID register every time, 16 times an iteration (about 700 instructions in all).
 * Result: the sum of (i ^ count) over the iterations; count == iterations. */
#include "kbench.h"

const u32 workload_default_iters = 4000;

struct {
    struct spinlock lock;
    u32 count;
    u32 sum;
} counter;

void workload_setup(void)
{
    initlock(&counter.lock, "counter");
}

u32 workload_run(u32 iters)
{
    for (u32 i = 0; i < iters; i++) {
        acquire(&counter.lock);
        counter.count++;
        counter.sum += i ^ counter.count;
        release(&counter.lock);
    }
    return counter.sum;
}
