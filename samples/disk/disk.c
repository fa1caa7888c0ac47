/* disk: an ATA/IDE driver in PIO mode that sleeps on IRQ14.
 *
 * What it demonstrates (primary channel, ports 0x1F0-0x1F7 and 0x3F6):
 *  - IDENTIFY DEVICE: the model string and the LBA28 sector count;
 *  - READ SECTORS (one interrupt per sector) and, after SET MULTIPLE MODE,
 *    READ MULTIPLE (one interrupt per block of sectors), LBA28 addressing;
 *    every sector is checked against the pattern samples/disk/mkimage.py
 *    writes ("TVMM SECTOR nnnn", then (7 * sector + offset) & 0xFF);
 *  - WRITE SECTORS (DRQ for the first sector, an interrupt after each) and
 *    CACHE FLUSH, then the sectors read back and compared;
 *  - the device-select bit: with no slave, selecting it reads status 0 and
 *    the driver says so; with one, its IDENTIFY and first sector.
 * The driver never polls BSY for a read: it issues the command and `hlt`s
 * until the interrupt handler has seen IRQ14 (reading the status register
 * acknowledges the device; an EOI to both 8259s acknowledges the PIC).
 */
#include "../lib/x86.h"

#define ATA_DATA    0x1F0
#define ATA_COUNT   0x1F2
#define ATA_LBA0    0x1F3
#define ATA_LBA1    0x1F4
#define ATA_LBA2    0x1F5
#define ATA_DEVICE  0x1F6
#define ATA_STATUS  0x1F7
#define ATA_COMMAND 0x1F7
#define ATA_CONTROL 0x3F6

#define ST_ERR  0x01
#define ST_DRQ  0x08
#define ST_DRDY 0x40
#define ST_BSY  0x80

#define MULTIPLE 4

static inline void insw(u16 port, void *buf, u32 words)
{
    __asm__ volatile("cld; rep insw" : "+D"(buf), "+c"(words) : "d"(port) : "memory");
}

static inline void outsw(u16 port, const void *buf, u32 words)
{
    __asm__ volatile("cld; rep outsw" : "+S"(buf), "+c"(words) : "d"(port) : "memory");
}

static volatile u32 irqs;
static u8 last_status;
static u16 buf[256 * MULTIPLE];
static u32 checked, errors;

static void ide_irq(struct trapframe *tf)
{
    (void)tf;
    last_status = inb(ATA_STATUS);           /* acknowledges the device's interrupt */
    irqs++;
    pic_eoi(14);
}

/* Sleep until the next IRQ14. */
static void wait_irq(void)
{
    static u32 seen;
    cli();
    while (irqs == seen) {
        __asm__ volatile("sti; hlt; cli");   /* sti's shadow: no wakeup is lost */
    }
    seen = irqs;
    sti();
    if (last_status & ST_ERR)
        panic("ATA error");
}

static void select(int slave, u32 lba)
{
    outb(ATA_DEVICE, (u8)(0xE0 | (slave << 4) | ((lba >> 24) & 0x0F)));   /* LBA mode */
}

static void command(int slave, u32 lba, u8 count, u8 cmd)
{
    select(slave, lba);
    outb(ATA_COUNT, count);
    outb(ATA_LBA0, (u8)lba);
    outb(ATA_LBA1, (u8)(lba >> 8));
    outb(ATA_LBA2, (u8)(lba >> 16));
    outb(ATA_COMMAND, cmd);
}

static void put_model(const u16 *id)
{
    char model[41];
    for (int i = 0; i < 20; i++) {
        model[2 * i] = (char)(id[27 + i] >> 8);
        model[2 * i + 1] = (char)id[27 + i];
    }
    int n = 40;
    while (n > 0 && model[n - 1] == ' ')
        n--;
    model[n] = 0;
    puts(model);
}

static int identify(int slave)
{
    select(slave, 0);
    u8 st = inb(ATA_STATUS);
    if (st == 0 || st == 0xFF)
        return 0;                            /* nothing there */
    outb(ATA_COMMAND, 0xEC);
    wait_irq();
    insw(ATA_DATA, buf, 256);
    puts(slave ? "disk: slave  \"" : "disk: master \"");
    put_model(buf);
    puts("\", ");
    put_dec(buf[60] | (u32)buf[61] << 16);
    puts(" sectors\n");
    return 1;
}

/* Does this sector hold what mkimage.py wrote there? */
static int sector_ok(const u8 *s, u32 n)
{
    const char *head = "TVMM SECTOR ";
    for (int i = 0; i < 12; i++)
        if (s[i] != (u8)head[i])
            return 0;
    if (s[12] != '0' + n / 1000 % 10 || s[13] != '0' + n / 100 % 10 ||
        s[14] != '0' + n / 10 % 10 || s[15] != '0' + n % 10)
        return 0;
    for (u32 i = 16; i < 512; i++)
        if (s[i] != (u8)(7 * n + i))
            return 0;
    return 1;
}

static void check(const u8 *s, u32 n)
{
    checked++;
    if (!sector_ok(s, n)) {
        errors++;
        puts("disk: sector ");
        put_dec(n);
        puts(" does not match the image\n");
    }
}

static u32 sum(const u16 *w, u32 words)
{
    u32 s = 0;
    for (u32 i = 0; i < words; i++)
        s = s * 33 + w[i];
    return s;
}

void kmain(u32 magic, u32 info)
{
    (void)magic;
    (void)info;
    serial_init();
    x86_init();
    set_trap_handler(IRQ_BASE + 14, ide_irq);
    pic_init();
    pic_unmask(14);
    sti();
    outb(ATA_CONTROL, 0x00);                 /* nIEN = 0: interrupts on */

    if (!identify(0))
        panic("no master disk");

    /* READ SECTORS: 4 sectors, one interrupt each */
    command(0, 0, 4, 0x20);
    u32 irq_before = irqs;
    for (u32 n = 0; n < 4; n++) {
        wait_irq();
        insw(ATA_DATA, buf, 256);
        check((const u8 *)buf, n);
    }
    puts("disk: READ SECTORS 0-3: ");
    put_dec(irqs - irq_before);
    puts(" interrupts\n");

    /* SET MULTIPLE MODE, then READ MULTIPLE: 8 sectors in blocks of 4 */
    select(0, 0);
    outb(ATA_COUNT, MULTIPLE);
    outb(ATA_COMMAND, 0xC6);
    wait_irq();
    command(0, 4, 8, 0xC4);
    irq_before = irqs;
    u32 crc = 0;
    for (u32 block = 0; block < 2; block++) {
        wait_irq();
        insw(ATA_DATA, buf, 256 * MULTIPLE);
        for (u32 i = 0; i < MULTIPLE; i++)
            check((const u8 *)buf + 512 * i, 4 + block * MULTIPLE + i);
        crc = crc * 7 + sum(buf, 256 * MULTIPLE);
    }
    puts("disk: READ MULTIPLE 4-11: ");
    put_dec(irqs - irq_before);
    puts(" interrupts, checksum ");
    put_hex(crc);
    puts("\n");
    puts("disk: ");
    put_dec(checked);
    puts(" sectors checked, ");
    put_dec(errors);
    puts(" mismatches\n");

    /* WRITE SECTORS 100-101, CACHE FLUSH, read back */
    for (u32 i = 0; i < 512; i++)
        buf[i] = (u16)(0xD15C + i);
    command(0, 100, 2, 0x30);
    while ((inb(ATA_STATUS) & (ST_BSY | ST_DRQ)) != ST_DRQ)
        ;                                    /* the first sector is asked for by DRQ, not IRQ */
    outsw(ATA_DATA, buf, 256);
    wait_irq();
    outsw(ATA_DATA, buf + 256, 256);
    wait_irq();
    select(0, 0);
    outb(ATA_COMMAND, 0xE7);
    wait_irq();
    for (u32 i = 0; i < 512; i++)
        buf[i] = 0;
    command(0, 100, 2, 0x20);
    wait_irq();
    insw(ATA_DATA, buf, 256);
    wait_irq();
    insw(ATA_DATA, buf + 256, 256);
    int same = 1;
    for (u32 i = 0; i < 512; i++)
        if (buf[i] != (u16)(0xD15C + i))
            same = 0;
    puts(same ? "disk: wrote sectors 100-101, flushed, read them back: identical\n"
              : "disk: read-back of sectors 100-101 DIFFERS\n");

    /* the slave */
    if (identify(1)) {
        command(1, 0, 1, 0x20);
        wait_irq();
        insw(ATA_DATA, buf, 256);
        char head[33];
        for (int i = 0; i < 32; i++)
            head[i] = ((const char *)buf)[i] >= ' ' ? ((const char *)buf)[i] : '.';
        head[32] = 0;
        puts("disk: slave sector 0 starts \"");
        puts(head);
        puts("\"\n");
    } else {
        puts("disk: no slave\n");
    }
    puts("disk: done\n");
    cli();
    for (;;)
        hlt();
}
