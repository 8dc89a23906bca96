/*
 * trampoline.S - where application processors (APs) begin.
 *
 * An AP woken by INIT-SIPI-SIPI starts in 16-bit real mode at address
 * vector * 4096, which must lie below 1 MiB. This code is therefore not run
 * where it is linked: smp.c copies trampoline_start..trampoline_end to
 * TRAMPOLINE_ADDR, fills in the page table root and the AP's stack, and
 * sends the SIPI with vector TRAMPOLINE_ADDR / 4096. Every address below is
 * computed relative to that copy.
 *
 * The AP then climbs the same ladder as the BSP did in entry.S, one rung
 * lower: real mode -> 32-bit protected mode (CR0.PE) -> long mode (PAE,
 * CR3, EFER.LME, CR0.PG), sharing the BSP's GDT and page tables.
 */
#define TRAMPOLINE_ADDR 0x8000
#define SEL_CODE64 0x08
#define SEL_DATA 0x10
#define SEL_CODE32 0x18
#define AT(label) (TRAMPOLINE_ADDR + (label) - trampoline_start)

	.section .rodata
	.balign 16
	.globl trampoline_start, trampoline_end, trampoline_cr3, trampoline_stack
	.code16
trampoline_start:
	cli
	cld
	mov %cs, %ax                    /* CS = TRAMPOLINE_ADDR >> 4 */
	mov %ax, %ds
	lgdtl trampoline_gdtr - trampoline_start
	mov %cr0, %eax
	or $1, %eax                     /* CR0.PE: protected mode */
	mov %eax, %cr0
	ljmpl $SEL_CODE32, $AT(trampoline_32)

	.code32
trampoline_32:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $0x20, %eax                  /* CR4.PAE */
	mov %eax, %cr4
	mov AT(trampoline_cr3), %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx           /* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000000, %eax            /* CR0.PG: paging on, long mode active */
	mov %eax, %cr0
	ljmp $SEL_CODE64, $AT(trampoline_64)

	.code64
trampoline_64:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov AT(trampoline_stack), %rsp
	mov $ap_main, %rax              /* now at the kernel's linked addresses */
	call *%rax
1:	cli
	hlt
	jmp 1b

	.balign 8
trampoline_gdtr:                        /* lgdtl operand: 16-bit limit, 32-bit base */
	.word 31
	.long gdt
	.balign 8
trampoline_cr3:
	.quad 0
trampoline_stack:
	.quad 0
trampoline_end:
