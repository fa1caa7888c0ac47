/* boot16: the boot sector (sector 0), 16-bit code at 0000:7C00.  It sets
 * up the segments and the stack, reads the C part (sectors 1..) to 0x7E00
 * through the IDE ports (tvmm has no BIOS, so no INT 13h), enters big real
 * mode and calls main (gcc -m16: calll, so 32-bit return addresses). */
    .code16
    .section .text.start, "ax"
    .globl _start
_start:
    cli
    cld
    ljmpw $0, $1f                 /* normalize CS:IP to 0000:7Cxx */
1:  xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $0x7C00, %esp            /* gcc -m16 code addresses the stack with ESP */
    movb %dl, drive
    inb $0x92, %al                /* fast A20 on */
    orb $2, %al
    andb $0xFE, %al
    outb %al, $0x92

    /* ATA PIO, LBA 28: READ SECTORS from LBA 1, count = the C part */
    call wait_ready
    movw $0x1F2, %dx
    movb $c_sectors, %al
    outb %al, %dx                 /* 0x1F2 count */
    incw %dx
    movb $1, %al
    outb %al, %dx                 /* 0x1F3 LBA 0-7 */
    incw %dx
    xorb %al, %al
    outb %al, %dx                 /* 0x1F4 LBA 8-15 */
    incw %dx
    outb %al, %dx                 /* 0x1F5 LBA 16-23 */
    incw %dx
    movb $0xE0, %al
    outb %al, %dx                 /* 0x1F6 master, LBA */
    incw %dx
    movb $0x20, %al
    outb %al, %dx                 /* 0x1F7 READ SECTORS */
    movw $0x7E00, %di
    movw $c_sectors, %bx
2:  call wait_ready
    movw $0x1F0, %dx
    movw $256, %cx
    rep insw
    decw %bx
    jnz 2b

    /* big real mode: load DS and ES from a 4 GiB data descriptor in
     * protected mode, go back to real mode; the limits stay. */
    lgdtl gdtdesc
    movl %cr0, %eax
    orb $1, %al
    movl %eax, %cr0
    jmp 3f
3:  movw $8, %bx
    movw %bx, %ds
    movw %bx, %es
    andb $0xFE, %al
    movl %eax, %cr0
    ljmpw $0, $4f
4:  xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movzbl drive, %eax            /* main(boot drive) */
    pushl %eax
    calll main
5:  hlt
    jmp 5b

wait_ready:                       /* until BSY clear and DRDY set */
    movw $0x1F7, %dx
6:  inb %dx, %al
    andb $0xC0, %al
    cmpb $0x40, %al
    jne 6b
    ret

drive:
    .byte 0
    .p2align 3
gdt:
    .quad 0
    .quad 0x00CF92000000FFFF      /* data: base 0, limit 4 GiB, writable */
gdtdesc:
    .word gdtdesc - gdt - 1
    .long gdt
