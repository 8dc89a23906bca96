/*
 * entry.S - from the PVH entry point to C, for the bootstrap vCPU.
 *
 * A PVH loader (QEMU, gureum-vmm, Firecracker ...) reads the ELF note
 * below, loads our segments at their physical addresses and starts the
 * first vCPU at the note's address in 32-bit protected mode with paging
 * off, flat segments and %ebx = physical address of struct hvm_start_info.
 * Nothing else is set up: we bring our own GDT, page tables and stack.
 *
 * Going to 64-bit ("long") mode takes four steps: enable PAE in CR4, point
 * CR3 at a 4-level page table, set EFER.LME, then enable paging in CR0.
 * A far jump into a 64-bit code segment then switches the decoder to
 * 64-bit instructions.
 */

#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

/* Page table entry bits. */
#define PTE_P 0x1      /* present */
#define PTE_RW 0x2     /* writable */
#define PTE_PWT 0x8    /* write-through */
#define PTE_PCD 0x10   /* cache disabled: device windows */
#define PTE_PS 0x80    /* 2 MiB page in a page directory */

/* GDT selectors, also used by trampoline.S and the IDT. */
#define SEL_CODE64 0x08
#define SEL_DATA 0x10
#define SEL_CODE32 0x18

	/* The PVH ELF note: type 18 = XEN_ELFNOTE_PHYS32_ENTRY. */
	.section .note.Xen, "a"
	.balign 4
	.long 4                 /* name size, "Xen\0" */
	.long 8                 /* descriptor size: the entry address */
	.long 18
	.asciz "Xen"
	.balign 4
	.quad pvh_start         /* 8 bytes, as Linux writes it: loaders accept both */

	.section .boot, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	cld
	mov %ebx, %esi                  /* keep the hvm_start_info address */

	/* Our GDT, then reload every segment register from it. */
	lgdt gdt_pointer
	ljmp $SEL_CODE32, $1f
1:	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs

	/*
	 * Zero .bss in one instruction: the loader may not have. The linker
	 * script page-aligns both ends, so it goes 4 bytes at a time (the
	 * widest store in 32-bit mode): KVM's emulator runs a "rep stos"
	 * element by element, and stosl needs a quarter of the iterations of
	 * stosb.
	 */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	shr $2, %ecx
	xor %eax, %eax
	rep stosl

	/*
	 * Identity-map the first 4 GiB with 2 MiB pages: PML4[0] -> PDPT,
	 * PDPT[0..3] -> four page directories of 512 entries each. The top
	 * GiB (0xc0000000..) holds the PCI windows, the IOAPIC and the local
	 * APIC: it is mapped uncached so that device registers are not
	 * cached or combined.
	 */
	mov $pdpt, %eax
	or $(PTE_P | PTE_RW), %eax
	mov %eax, pml4
	mov $page_dirs, %edi
	xor %ecx, %ecx                  /* ecx = 2 MiB page number */
	mov $pdpt, %ebx
2:	mov %ecx, %eax
	shl $21, %eax
	or $(PTE_P | PTE_RW | PTE_PS), %eax
	cmp $1536, %ecx                 /* 1536 * 2 MiB = 3 GiB */
	jb 3f
	or $(PTE_PCD | PTE_PWT), %eax
3:	mov %eax, (%edi,%ecx,8)         /* the high half stays zero (.bss) */
	inc %ecx
	cmp $2048, %ecx
	jb 2b
	mov $0, %ecx                    /* PDPT[i] = page_dirs + i * 4096 */
4:	mov %ecx, %eax
	shl $12, %eax
	add $page_dirs, %eax
	or $(PTE_P | PTE_RW), %eax
	mov %eax, (%ebx,%ecx,8)
	inc %ecx
	cmp $4, %ecx
	jb 4b

	/* The four steps into long mode. */
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG | CR0_PE), %eax
	mov %eax, %cr0
	ljmp $SEL_CODE64, $long_mode

	.code64
long_mode:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov $bsp_stack_top, %rsp
	mov %esi, %edi                  /* main(hvm_start_info physical address) */
	call main
5:	cli
	hlt
	jmp 5b

	.section .rodata
	.balign 16
	/*
	 * The GDT. In long mode segments are almost unused, but the CPU still
	 * needs a 64-bit code descriptor (L bit) for CS and a data descriptor
	 * for SS; the 32-bit code descriptor serves the mode switch.
	 */
	.globl gdt, gdt_pointer
gdt:
	.quad 0                         /* null */
	.quad 0x00af9a000000ffff        /* 0x08: 64-bit code, L=1 */
	.quad 0x00cf92000000ffff        /* 0x10: data, flat 4 GiB */
	.quad 0x00cf9a000000ffff        /* 0x18: 32-bit code, flat 4 GiB */
gdt_end:
gdt_pointer:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .bss
	.balign 4096
	.globl pml4
pml4:	.skip 4096
pdpt:	.skip 4096
page_dirs:
	.skip 4 * 4096
	.balign 16
	.skip 16384
	.globl bsp_stack_top
bsp_stack_top:
