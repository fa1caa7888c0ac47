/* fpu86: the 16-bit routine run in virtual-8086 mode, and the ring-0 entry
 * and exit of that mode. */

/* ------------------------------------------------------------ 16-bit code
 * Position-independent: the kernel copies v86_code..v86_code_end to
 * V86_SEG:0000 (below 1 MiB) and enters it with CS = DS = V86_SEG,
 * SS:SP = its own stack, IOPL 0.  With IOPL 0 every IOPL-sensitive
 * instruction here (CLI, STI, INT n) and HLT raise #GP; the kernel emulates
 * them.  Result: DX:AX = F(TABLE_N) * 0x9E37 where the table sum is in BX,
 * SI the offset reached reading the table. */
    .set TABLE_PARA, 0x40            /* the table: ES = CS + 0x40, i.e. CS:0400 */
    .set TABLE_N, 24

    .section .rodata
    .code16
    .global v86_code, v86_code_end
v86_code:
    cli                              /* #GP: virtual IF := 0 */
    mov $0x09, %ah                   /* "DOS" print string DS:DX up to '$' */
    mov $(msg - v86_code), %dx
    int $0x21                        /* #GP (IOPL 0): the kernel prints it */
    mov %cs, %ax                     /* segment arithmetic: ES = CS + 0x40 */
    add $TABLE_PARA, %ax
    mov %ax, %es
    xor %di, %di
    mov $1, %ax                      /* Fibonacci numbers mod 2^16 to ES:0 */
    mov $1, %bx
    mov $TABLE_N, %cx
    cld
1:  stosw
    mov %ax, %dx
    add %bx, %ax
    mov %dx, %bx
    loop 1b
    mov $(TABLE_PARA << 4), %si      /* read them back through DS:0400 */
    mov $TABLE_N, %cx
    xor %bx, %bx
2:  lodsw
    add %ax, %bx
    loop 2b
    mov %bx, %ax
    mov $0x9E37, %cx
    mul %cx                          /* DX:AX = sum * 0x9E37 */
    sti                              /* #GP: virtual IF := 1 */
    hlt                              /* #GP: back to the kernel */
    jmp .
msg:
    .ascii "hello from 16-bit code$"
v86_code_end:

/* --------------------------------------------------- entering and leaving
 * void v86_enter(void *frame): resume the VM86 frame (EFLAGS.VM set) the
 * way every trap returns (trap_return); a handler that calls v86_leave()
 * makes v86_enter return, on the stack it was called on. */
    .code32
    .text
    .global v86_enter, v86_leave
v86_enter:
    push %ebp
    push %ebx
    push %esi
    push %edi
    mov %esp, saved_esp
    mov 20(%esp), %esp
    jmp trap_return
v86_leave:
    mov saved_esp, %esp
    pop %edi
    pop %esi
    pop %ebx
    pop %ebp
    ret

    .bss
    .align 4
saved_esp:
    .long 0

    .section .note.GNU-stack, "", @progbits
