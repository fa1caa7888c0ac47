/* fpu86: what the kernel (fpu86.c, no x87 code) and its ring-3 tasks
 * (tasks.c, x87 code) share. */
#ifndef FPU86_H
#define FPU86_H
#include "../lib/x86.h"

typedef unsigned long long u64;

#define SYS_PUTS 0              /* ebx: a string */
#define SYS_EXIT 1              /* ebx: the task's struct result */

#define PI_TERMS   12000        /* task A: Nilakantha series, terms */
#define SQRT_TERMS 6000         /* task B: sqrt(1) + ... + sqrt(SQRT_TERMS) */
#define INT_ROUNDS 20000        /* task B: integer work before it touches the FPU */

struct result {
    u64 scaled;                 /* the value times 10^digits, by FISTP under the task's FCW */
    u32 digits;
    u32 integer;                /* task B: its integer checksum */
    u16 fcw;                    /* FCW at the end (FNSTCW) */
    u8 value[10];               /* the value as FSTP m80 stored it */
};

void task_a(struct result *r) __attribute__((noreturn));
void task_b(struct result *r) __attribute__((noreturn));

#endif
