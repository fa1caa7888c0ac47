/* COM1 (16550A at 0x3F8), CGA text at 0xB8000 and QEMU-style debug exit. */
#include "pc.h"

#define COM1 0x3F8
static volatile u16 *const cga = (volatile u16 *)0xB8000;
static int cga_pos;

void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xC7);   /* FIFO on */
}

void serial_putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

static void cga_cursor(void)
{
    outb(0x3D4, 14); outb(0x3D5, (u8)(cga_pos >> 8));
    outb(0x3D4, 15); outb(0x3D5, (u8)cga_pos);
}

void cga_putc(char c)
{
    if (c == '\n') {
        cga_pos += 80 - cga_pos % 80;
    } else {
        cga[cga_pos++] = (u16)(0x0700 | (u8)c);
    }
    if (cga_pos >= 80 * 25) {
        for (int i = 0; i < 80 * 24; i++)
            cga[i] = cga[i + 80];
        for (int i = 80 * 24; i < 80 * 25; i++)
            cga[i] = 0x0720;
        cga_pos -= 80;
    }
    cga_cursor();
}

void puts(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s);
        cga_putc(*s);
    }
}

void put_hex(u32 v)
{
    char buf[11] = "0x";
    for (int i = 0; i < 8; i++)
        buf[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 15];
    buf[10] = 0;
    puts(buf);
}

void put_dec(u32 v)
{
    char buf[12];
    int i = 11;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts(buf + i);
}

void qemu_exit(u32 code)
{
    outl(0xF4, code);
}
