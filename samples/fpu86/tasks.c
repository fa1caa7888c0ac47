/* fpu86's ring-3 tasks: x87 code (this file alone is compiled with
 * -m80387 -mfpmath=387; the kernel is built without the FPU).  Every value
 * is a long double, so gcc keeps the loops' state in the x87 stack between
 * iterations: a preemption mid-loop leaves the partial sums in ST(0..n), and
 * only the kernel's lazy FPU switching keeps them.  Task B also runs under a
 * control word of its own (53-bit precision, round toward zero), which a
 * kernel that shared one FPU state between tasks would leak into task A. */
#include "fpu86.h"

static inline void sys(u32 n, const void *arg)
{
    __asm__ volatile("int $0x80" : : "a"(n), "b"(arg) : "memory");
}

static inline void fldcw(u16 cw) { __asm__ volatile("fldcw %0" : : "m"(cw)); }
static inline u16 fnstcw(void) { u16 cw; __asm__ volatile("fnstcw %0" : "=m"(cw)); return cw; }
static inline long double fsqrt(long double x) { __asm__("fsqrt" : "+t"(x)); return x; }

static inline u64 fistp64(long double x)
{
    u64 v;
    __asm__ volatile("fistpll %0" : "=m"(v) : "t"(x) : "st");
    return v;
}

static inline void fstp80(long double x, u8 *p)
{
    __asm__ volatile("fstpt %0" : "=m"(*(u8 (*)[10])p) : "t"(x) : "st");
}

static __attribute__((noreturn)) void finish(struct result *r, long double x, long double scale, u32 digits)
{
    r->digits = digits;
    r->scaled = fistp64(x * scale);
    fstp80(x, r->value);
    r->fcw = fnstcw();
    sys(SYS_EXIT, r);
    for (;;)
        ;
}

/* Task A: pi by Nilakantha's series, 3 + 4/(2*3*4) - 4/(4*5*6) + ...,
 * under the FCW FNINIT gives (64-bit precision, round to nearest). */
void task_a(struct result *r)
{
    sys(SYS_PUTS, "fpu86: task A: pi by Nilakantha's series\n");
    long double s = 3.0L, a = 2.0L, t = 4.0L;
    for (u32 k = 0; k < PI_TERMS; k++) {
        s += t / (a * (a + 1.0L) * (a + 2.0L));
        a += 2.0L;
        t = -t;
    }
    finish(r, s, 1e12L, 12);
}

/* Task B: first integer work (no FPU: switches to it cost no #NM), then
 * sqrt(1) + ... + sqrt(n) with FSQRT under FCW 0x0E7F: 53-bit precision,
 * round toward zero, all exceptions masked. */
void task_b(struct result *r)
{
    sys(SYS_PUTS, "fpu86: task B: integer phase\n");
    u32 h = 2166136261u;
    for (u32 i = 0; i < INT_ROUNDS; i++)
        h = (h ^ (i & 0xFF)) * 16777619u;
    r->integer = h;
    sys(SYS_PUTS, "fpu86: task B: sqrt sum, FCW 0x0e7f\n");
    fldcw(0x0E7F);
    long double s = 0.0L, k = 1.0L;
    for (u32 i = 0; i < SQRT_TERMS; i++) {
        s += fsqrt(k);
        k += 1.0L;
    }
    finish(r, s, 1e6L, 6);
}
