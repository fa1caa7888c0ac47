/* Tiny PC support for the sample kernels: port I/O, COM1, CGA text, exit. */
#ifndef SAMPLES_PC_H
#define SAMPLES_PC_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

void serial_init(void);
void serial_putc(char c);
void cga_putc(char c);
void puts(const char *s);          /* both serial and screen */
void put_hex(u32 v);
void put_dec(u32 v);
void qemu_exit(u32 code);          /* debug-exit on port 0xF4: status (code << 1) | 1 */

#endif
