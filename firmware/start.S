/* Start-up code of the control firmware: set the stack, clear .bss, run main.
 * The host loads the image at address 0 while the CPU is held in reset; picorv32 starts at 0. */
    .section .text.start
    .global _start
_start:
    la      sp, __stack_top
    la      a0, __bss_start
    la      a1, __bss_end
1:  bgeu    a0, a1, 2f
    sw      zero, 0(a0)
    addi    a0, a0, 4
    j       1b
2:  call    main
3:  j       3b
