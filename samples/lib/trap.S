/* One entry stub per vector: push a zero error code where the CPU pushes
 * none, push the vector, then a common path builds a struct trapframe and
 * calls trap_dispatch(tf). */
    .text
.macro stub n
    .align 8
vec\n:
    .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17)
    .else
    pushl $0
    .endif
    pushl $\n
    jmp trap_common
.endm

    .altmacro
    .set i, 0
    .rept 256
    stub %i
    .set i, i + 1
    .endr

trap_common:
    pushl %ds
    pushl %es
    pushl %fs
    pushl %gs
    pushal
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    pushl %esp
    call trap_dispatch                 /* returns the frame to resume (a task switch changes it) */
    movl %eax, %esp
    .global trap_return
trap_return:
    popal
    popl %gs
    popl %fs
    popl %es
    popl %ds
    addl $8, %esp                      /* vector, error code */
    iret

/* The stubs' addresses, for the IDT. */
    .section .rodata
    .align 4
    .global trap_vectors
trap_vectors:
    .macro entry n
    .long vec\n
    .endm
    .set i, 0
    .rept 256
    entry %i
    .set i, i + 1
    .endr

    .section .note.GNU-stack, "", @progbits
