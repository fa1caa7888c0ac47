/* Protected-mode plumbing shared by the sample kernels: segments, the TSS,
 * the IDT with one C dispatcher, the 8259A PIC, the 8254 PIT and the local
 * APIC.  Everything here is what a small kernel writes for itself; nothing
 * depends on tvmm. */
#ifndef SAMPLES_X86_H
#define SAMPLES_X86_H
#include "pc.h"

/* GDT selectors (x86_init loads them). */
#define SEG_KCODE 0x08
#define SEG_KDATA 0x10
#define SEG_UCODE (0x18 | 3)
#define SEG_UDATA (0x20 | 3)
#define SEG_TSS   0x28

/* What trap.S pushes, lowest address first: the frame a handler sees. */
struct trapframe {
    u32 edi, esi, ebp, esp_dummy, ebx, edx, ecx, eax;   /* pushal */
    u32 gs, fs, es, ds;
    u32 vector, error;
    u32 eip, cs, eflags;
    u32 user_esp, user_ss;                              /* only from ring 3 */
};

typedef void (*trap_handler)(struct trapframe *tf);

/* Vectors 32..47 are the remapped 8259 IRQs; 0x80 is the system call gate
 * (DPL 3).  Every vector 0..255 has a stub. */
#define IRQ_BASE 32
#define T_SYSCALL 0x80

void x86_init(void);                              /* GDT, TSS, IDT; interrupts stay off */
/* A handler may ask for another frame to be resumed instead of the one it
 * got (a task switch: frames live on each task's kernel stack). */
void trap_switch(struct trapframe *tf);
void trap_resume(struct trapframe *tf) __attribute__((noreturn));   /* start running a frame */
void set_trap_handler(int vector, trap_handler h);
void set_kernel_stack(u32 esp0);                  /* TSS.ESP0 for ring 3 -> 0 */
void enter_user(u32 eip, u32 esp) __attribute__((noreturn));
void panic(const char *msg) __attribute__((noreturn));

void pic_init(void);                              /* remapped to 32..47, all masked */
void pic_unmask(int irq);
void pic_eoi(int irq);
void pit_periodic(u32 hz);                        /* channel 0, mode 2 */

#define LAPIC_BASE 0xFEE00000u
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
void lapic_eoi(void);

static inline void sti(void) { __asm__ volatile("sti"); }
static inline void cli(void) { __asm__ volatile("cli"); }
static inline void hlt(void) { __asm__ volatile("hlt"); }
static inline u32 read_cr2(void) { u32 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u32 read_cr0(void) { u32 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void write_cr0(u32 v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline void write_cr3(u32 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void invlpg(u32 va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }

#endif
