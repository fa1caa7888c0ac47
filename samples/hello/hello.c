/* hello: the smallest useful guest — serial and CGA output, then exit.
 * With "echo" on the command line it first reads a line from COM1 and
 * prints it back in capitals (the console-interaction demo). */
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
    if ((flags & 4) && *(const char *)*(u32 *)(info + 16) == 'e') {   /* cmdline "echo" */
        puts("type a line: ");
        char line[64];
        int n = 0;
        for (;;) {                                  /* polled COM1 input */
            while (!(inb(0x3F8 + 5) & 1))
                ;
            char c = (char)inb(0x3F8);
            if (c == '\r' || c == '\n' || n == 63)
                break;
            line[n++] = c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
        }
        line[n] = 0;
        puts("\nyou typed: ");
        puts(line);
        puts("\n");
    }
    puts("bye\n");
    /* returning halts with interrupts off: `tvmm run --headless` exits 0 */
}
