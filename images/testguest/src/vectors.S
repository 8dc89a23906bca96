/*
 * vectors.S - the 256 interrupt entry points.
 *
 * When an interrupt or exception arrives, the CPU pushes SS, RSP, RFLAGS,
 * CS and RIP (and, for some exceptions, an error code) on the stack and
 * jumps to the IDT entry's address. Each stub below makes the frame
 * uniform (a zero where the CPU pushed no error code), pushes its vector
 * number and joins interrupt_common, which saves the general registers and
 * calls interrupt_dispatch(frame) in C.
 *
 * Stubs are 16 bytes apart, so stub n lives at interrupt_stubs + 16 * n.
 * The guest uses no SSE/x87 (built with -mno-sse), so the C handler cannot
 * clobber floating-point state and none needs saving.
 */
	.text
	.code64

.macro stub n
	.balign 16
	/* Exceptions 8, 10-14, 17, 21, 29, 30 push an error code. */
	.if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
	.else
	pushq $0
	.endif
	pushq $\n
	jmp interrupt_common
.endm

	.balign 16
	.globl interrupt_stubs
interrupt_stubs:
	.altmacro
	.set i, 0
	.rept 256
	stub %i
	.set i, i + 1
	.endr

interrupt_common:
	push %rax
	push %rcx
	push %rdx
	push %rbx
	push %rbp
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	cld
	mov %rsp, %rdi          /* frame: r15 .. rax, vector, error, rip, cs, rflags, rsp, ss */
	mov %rsp, %rbx
	and $-16, %rsp          /* the C ABI wants a 16-byte aligned stack */
	call interrupt_dispatch
	mov %rbx, %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rbp
	pop %rbx
	pop %rdx
	pop %rcx
	pop %rax
	add $16, %rsp           /* vector and error code */
	iretq
