/* boot16: a 16-bit C program (gcc -m16) started by a boot sector (start.S,
 * which loads it from sectors 1.. to 0x7E00): calls with arguments and
 * results (calll/retl: 32-bit return addresses in real mode), recursion, a
 * loop, port output to COM1, and memory above 1 MiB through big real mode.
 * It prints one line and returns; start.S then halts with interrupts off,
 * so `tvmm run --headless --guest boot=disk,disk0=build/boot16.img` exits 0. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

#define COM1 0x3F8
/* A pointer above 1 MiB, through a register: gas assembles an absolute
 * address in 16-bit code as a 16-bit one, so gcc must not see a constant. */
static inline volatile u32 *high(u32 addr)
{
    __asm__("" : "+r"(addr));
    return (volatile u32 *)addr;
}

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static __attribute__((noinline)) void putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

static __attribute__((noinline)) void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

/* decimal digits of v into buf (NUL-terminated); returns the length */
static __attribute__((noinline)) int utoa(u32 v, char *buf)
{
    char tmp[10];
    int n = 0, i = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        buf[i++] = tmp[--n];
    buf[i] = 0;
    return i;
}

static __attribute__((noinline)) u32 fib(u32 n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static __attribute__((noinline)) void putnum(const char *label, u32 v)
{
    char buf[12];
    puts(label);
    utoa(v, buf);
    puts(buf);
}

void main(u32 drive)
{
    u32 sum = 0;
    for (u32 i = 1; i <= 100; i++)
        sum += i * i;
    volatile u32 *hi = high(0x00200000);  /* 2 MiB: DS limit 4 GiB */
    hi[0] = sum ^ 0x5A5A5A5A;
    hi[1] = fib(20);
    putnum("boot16: drive ", drive);
    putnum(" squares ", hi[0] ^ 0x5A5A5A5A);
    putnum(" fib20 ", hi[1]);
    *high(0x00100000) = 0xA20A20A2;      /* A20 on: no alias of 0 */
    puts(*high(0) != 0xA20A20A2 ? ", a20 ok\n" : ", a20 off\n");
}
