/* GDT, TSS, IDT, PIC, PIT and local APIC set-up for the sample kernels. */
#include "x86.h"

static u32 gdt[2 * 6];
static u32 idt[2 * 256];
static u32 tss[26];                     /* 104-byte 32-bit TSS */
static trap_handler handlers[256];
extern u32 trap_vectors[256];

static void set_desc(int i, u32 base, u32 limit, u32 access, u32 gran)
{
    gdt[2 * i] = (limit & 0xFFFF) | (base << 16);
    gdt[2 * i + 1] = ((base >> 16) & 0xFF) | (access << 8) | (((limit >> 16) & 0xF) << 16) |
                     (gran << 20) | (base & 0xFF000000);
}

static void set_gate(int vector, u32 dpl)
{
    u32 off = trap_vectors[vector];
    idt[2 * vector] = (off & 0xFFFF) | (SEG_KCODE << 16);
    idt[2 * vector + 1] = (off & 0xFFFF0000) | 0x8E00 | (dpl << 13);   /* 32-bit interrupt gate */
}

void x86_init(void)
{
    set_desc(1, 0, 0xFFFFF, 0x9A, 0xC);          /* kernel code */
    set_desc(2, 0, 0xFFFFF, 0x92, 0xC);          /* kernel data */
    set_desc(3, 0, 0xFFFFF, 0xFA, 0xC);          /* user code */
    set_desc(4, 0, 0xFFFFF, 0xF2, 0xC);          /* user data */
    set_desc(5, (u32)tss, sizeof tss - 1, 0x89, 0x0);   /* available 32-bit TSS */
    tss[2] = SEG_KDATA;                           /* SS0 */
    tss[25] = sizeof tss << 16;                   /* I/O map base past the limit: no port access at CPL 3 */
    struct { u16 limit; u32 base; } __attribute__((packed)) gdtr = { sizeof gdt - 1, (u32)gdt },
                                                              idtr = { sizeof idt - 1, (u32)idt };
    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $0x08, $1f\n1:\n\t"
                     "mov $0x10, %%ax\n\tmov %%ax, %%ds\n\tmov %%ax, %%es\n\t"
                     "mov %%ax, %%ss\n\tmov %%ax, %%fs\n\tmov %%ax, %%gs\n\t"
                     "mov $0x28, %%ax\n\tltr %%ax" : : "m"(gdtr) : "eax", "memory");
    for (int v = 0; v < 256; v++)
        set_gate(v, v == T_SYSCALL ? 3 : 0);
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

void set_trap_handler(int vector, trap_handler h) { handlers[vector] = h; }
void set_kernel_stack(u32 esp0) { tss[1] = esp0; }

void panic(const char *msg)
{
    cli();
    puts("panic: ");
    puts(msg);
    puts("\n");
    for (;;)
        hlt();
}

static struct trapframe *switch_to;

void trap_switch(struct trapframe *tf) { switch_to = tf; }

void trap_resume(struct trapframe *tf)
{
    __asm__ volatile("movl %0, %%esp\n\tjmp trap_return" : : "r"(tf));
    __builtin_unreachable();
}

struct trapframe *trap_dispatch(struct trapframe *tf)
{
    trap_handler h = handlers[tf->vector];
    if (h) {
        switch_to = 0;
        h(tf);
        return switch_to ? switch_to : tf;
    }
    puts("unexpected trap ");
    put_dec(tf->vector);
    puts(" error ");
    put_hex(tf->error);
    puts(" at eip ");
    put_hex(tf->eip);
    if (tf->vector == 14) {
        puts(" cr2 ");
        put_hex(read_cr2());
    }
    puts("\n");
    panic("unhandled trap");
}

void enter_user(u32 eip, u32 esp)
{
    __asm__ volatile("mov %0, %%ds\n\tmov %0, %%es\n\tmov %0, %%fs\n\tmov %0, %%gs\n\t"
                     "pushl %0\n\tpushl %1\n\tpushl $0x202\n\tpushl %2\n\tpushl %3\n\tiret"
                     : : "r"(SEG_UDATA), "r"(esp), "i"(SEG_UCODE), "r"(eip));
    __builtin_unreachable();
}

/* 8259A pair: ICW1-4 as the PC/AT BIOS leaves them, but vectors 32..47. */
void pic_init(void)
{
    outb(0x20, 0x11); outb(0xA0, 0x11);
    outb(0x21, IRQ_BASE); outb(0xA1, IRQ_BASE + 8);
    outb(0x21, 0x04); outb(0xA1, 0x02);
    outb(0x21, 0x01); outb(0xA1, 0x01);
    outb(0x21, 0xFB); outb(0xA1, 0xFF);          /* all masked but the cascade */
}

void pic_unmask(int irq)
{
    u16 port = irq < 8 ? 0x21 : 0xA1;
    outb(port, inb(port) & ~(1 << (irq & 7)));
}

void pic_eoi(int irq)
{
    if (irq >= 8)
        outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

void pit_periodic(u32 hz)
{
    u32 div = 1193182 / hz;
    outb(0x43, 0x34);                             /* channel 0, lo/hi, mode 2 */
    outb(0x40, (u8)div);
    outb(0x40, (u8)(div >> 8));
}

u32 lapic_read(u32 reg) { return *(volatile u32 *)(LAPIC_BASE + reg); }
void lapic_write(u32 reg, u32 v) { *(volatile u32 *)(LAPIC_BASE + reg) = v; }
void lapic_eoi(void) { lapic_write(0xB0, 0); }
