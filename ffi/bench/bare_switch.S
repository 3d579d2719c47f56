/*
 * The floor under corral's C ABI switch (x86-64 System V): the same protocol
 * as the runtime's c_abi enter/yield (callee-saved registers pushed, the other
 * side resumed by `call [pc]`, every frame left by an indirect jump) with none
 * of its bookkeeping: no claim of the coroutine (the compare-and-swap that
 * catches misuse), no current-coroutine tracking, no refusal checks. What
 * corral costs above this figure is that bookkeeping.
 *
 * A context block is two words: [0] the coroutine's saved stack pointer,
 * [8] its enterer's while it runs.
 */
    .intel_syntax noprefix
    .text

/* int bare_enter(struct bare_slots *slots) */
    .globl bare_enter
    .type bare_enter, @function
bare_enter:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov rsi, rdi
    mov rax, [rsi]
    call [rax]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    xor eax, eax
    pop rcx
    jmp rcx
    .size bare_enter, . - bare_enter

/* int bare_yield(struct bare_slots *slots) */
    .globl bare_yield
    .type bare_yield, @function
bare_yield:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov rsi, rdi
    lea rax, [rip + 1f]
    push rax
    mov [rsi], rsp
    mov rsp, [rsi + 8]
    pop rcx
    jmp rcx
1:
    mov [rsi + 8], rsp
    lea rsp, [rax + 8]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    xor eax, eax
    pop rcx
    jmp rcx
    .size bare_yield, . - bare_yield

/* Resume pc of a fresh stack laid out as [bare_start, body, arg]. */
    .globl bare_start
    .type bare_start, @function
bare_start:
    mov [rsi + 8], rsp
    lea rsp, [rax + 8]
    pop rcx
    pop rdi
    xor ebp, ebp
    call rcx
    ud2
    .size bare_start, . - bare_start

    .section .note.GNU-stack, "", @progbits
