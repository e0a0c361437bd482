/*
 * Entry points of the built-in guest: the multiboot v1 header, the BSP's
 * entry from the boot loader and the APs' real-mode trampoline.
 *
 * Nothing here (or anywhere in the guest) enables interrupts or executes
 * IRET: see README.md, "The never-IRET rule".
 */

#include "guest.h"

#define MB_MAGIC 0x1BADB002
/* bit 1: give us mem_lower/mem_upper; bit 16: the address fields are valid */
#define MB_FLAGS 0x00010002


    .section .multiboot, "a"
    .align 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long multiboot_header      /* header_addr */
    .long __load_start          /* load_addr */
    .long __load_end            /* load_end_addr */
    .long __bss_end             /* bss_end_addr */
    .long _start                /* entry_addr */

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    movl $(bsp_stack + STACK_SIZE), %esp
    pushl $0                    /* no return address to unwind to */
    pushl %ebx                  /* multiboot info */
    pushl %eax                  /* multiboot magic */
    call bsp_main
1:  cli
    hlt
    jmp 1b

/* void halt_forever(void): HLT with IF=0, forever (an NMI falls through). */
    .globl halt_forever
halt_forever:
    cli
1:  hlt
    jmp 1b

/*
 * AP trampoline: copied to TRAMPOLINE (0x8000) by the BSP and started by a
 * SIPI with vector 0x08 (CS=0x0800, IP=0). Real mode -> flat 32-bit
 * protected mode (paging off), then ap_main(index) on its own stack.
 */
#define TRAMPOLINE 0x8000
#define T(sym) (sym - trampoline_start)

    .section .rodata
    .globl trampoline_start, trampoline_end
    .code16
trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl T(tramp_gdtr)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(TRAMPOLINE + T(tramp32))
    .code32
tramp32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $1, %eax
    lock xaddl %eax, ap_next_index   /* eax = this AP's index (1, 2, ...) */
    cmpl $MAX_CPUS, %eax
    jae 2f
    movl %eax, %esp
    incl %esp
    shll $13, %esp                   /* (index + 1) * STACK_SIZE */
    addl $cpu_stacks, %esp
    pushl $0
    pushl %eax
    movl $ap_main, %ecx
    call *%ecx
2:  cli
    hlt
    jmp 2b
    .align 8
tramp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    /* 0x08: code, base 0, 4 GiB, 32-bit */
    .quad 0x00CF92000000FFFF    /* 0x10: data, base 0, 4 GiB */
tramp_gdtr:
    .word 23
    .long TRAMPOLINE + T(tramp_gdt)
trampoline_end:

    .bss
    .align 16
bsp_stack:
    .space STACK_SIZE
    .globl cpu_stacks
cpu_stacks:
    .space STACK_SIZE * MAX_CPUS
    .section .note.GNU-stack, "", @progbits
