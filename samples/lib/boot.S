/* Multiboot v1 entry shared by the sample kernels.
 * The loader enters here in flat 32-bit protected mode, paging off,
 * EAX = 0x2BADB002, EBX = multiboot information (spec section 3.2). */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00000002          /* we want the memory map */
    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .bss
    .align 16
stack_bottom:
    .skip 16384
stack_top:

    .section .text
    .global _start
_start:
    mov $stack_top, %esp
    push %ebx                          /* multiboot info */
    push %eax                          /* magic */
    call kmain
1:  cli
    hlt
    jmp 1b

    .section .note.GNU-stack, "", @progbits
