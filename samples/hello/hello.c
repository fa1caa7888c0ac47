/* hello: the smallest useful guest — serial and CGA output, then exit. */
#include "../lib/pc.h"

void kmain(u32 magic, u32 info)
{
    serial_init();
    puts("Hello from the hello sample kernel!\n");
    puts("multiboot magic ");
    put_hex(magic);
    puts(magic == 0x2BADB002 ? " ok\n" : " BAD\n");
    u32 flags = *(u32 *)info;
    if (flags & 1) {
        puts("memory: ");
        put_dec(*(u32 *)(info + 8) / 1024 + 1);
        puts(" MiB\n");
    }
    puts("bye\n");
    /* returning halts with interrupts off: `tvmm run --headless` exits 0 */
}
