//! The context switch (x86-64 System V): how a coroutine's stack is started,
//! entered and left.
//!
//! Our own rather than corosensei's, because of the CPU's return-stack
//! buffer (RSB). corosensei pairs the resume's `call` with the yield's
//! `ret`, which predicts perfectly when the yield is inlined into the
//! coroutine, and mispredicts twice per round trip when the yield sits
//! behind a function call, which is always the case from C (measured here:
//! 7 ns vs 25 ns per enter+yield). With a protocol of our own, Rust keeps
//! the paired `call`/`ret` and the C ABI (`c_abi.rs`) leaves every frame
//! with an indirect jump instead, so neither mispredicts.
//!
//! # Protocol
//!
//! A *suspended context* is a stack pointer whose top word is the address
//! to resume at (its "resume pc"). Each coroutine has two [`Slots`]: its own
//! suspended context while it is not running, and its enterer's while it
//! runs.
//!
//! * Resume (enterer → coroutine): load `rax = slots.co_sp`,
//!   `rsi = &slots`, `rdi = message`, then `call [rax]`. The call pushes the
//!   enterer's own resume pc on the enterer's stack.
//! * Landing (the code at a coroutine's resume pc): store `rsp` (the
//!   enterer's stack, its resume pc on top) into `slots.parent_sp`, set
//!   `rsp = rax + 8`, restore what the suspending code saved, go on.
//! * Suspend (coroutine → enterer): save the registers the code needs,
//!   push a resume pc, store `rsp` into `slots.co_sp`, load
//!   `rsp = slots.parent_sp`, `rdi = message`, and transfer to the pc on top
//!   of that stack: `ret` from Rust (it pops the enterer's `call` from the
//!   RSB) or `pop rcx; jmp rcx` from the C ABI.
//!
//! The enterer, back after its call, restores what it saved; the message
//! is in `rdi`. Every resume pc knows its own saved layout; the other side
//! only ever moves `rsp` and transfers, so any resume pairs with any
//! suspend.
//!
//! Registers: the caller-saved ones are clobbered; r12-r15 are declared
//! clobbered so the compiler saves them only where they are live; `rbx` and
//! `rbp` (reserved by LLVM) are pushed by hand. MXCSR and the x87 control
//! word are not switched (as with corosensei): a coroutine must leave the
//! floating-point modes as it found them.
//!
//! Not for processes that enable CET shadow stacks (no Rust binary is
//! marked for them today): the C ABI's indirect-jump exits and the resumes
//! by `call` do not pair calls with returns the way a shadow stack checks.
//!
//! Signals: at every instruction `rsp` points into a live stack with nothing
//! needed below it, so a signal handler may run at any point of a switch.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("corral-runtime's context switch is written for x86-64 only");

use std::arch::{asm, naked_asm};

/// The saved stack pointers of one coroutine (see the module's protocol).
/// `repr(C)`: the assembly knows the offsets (`co_sp` at 0, `parent_sp`
/// at 8).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Slots {
    /// The coroutine's suspended context while it is not running.
    pub(crate) co_sp: usize,
    /// Its enterer's suspended context while it runs.
    pub(crate) parent_sp: usize,
}

/// Offset of [`Slots::parent_sp`], as the assembly uses it.
pub(crate) const PARENT_SP: usize = 8;
const _: () = assert!(std::mem::offset_of!(Slots, parent_sp) == PARENT_SP);
const _: () = assert!(std::mem::offset_of!(Slots, co_sp) == 0);

/// One side of a switch: `asm!` with `templates` and the operands both
/// sides share, so they cannot drift apart: the message in and out in
/// `rdi`, the slots in `rsi`, and everything the other side may change
/// (caller-saved registers through clobber_abi, r12-r15 as lateouts; rbx
/// and rbp, which LLVM reserves, are pushed by the templates).
macro_rules! switch_asm {
    ($message:expr => $back:ident, $slots:expr, $($template:literal),+ $(,)?) => {
        switch_asm!($message => $back, $slots => _, $($template),+)
    };
    ($message:expr => $back:ident, $slots:expr => $slots_back:tt, $($template:literal),+ $(,)?) => {
        asm!(
            $($template),+,
            inlateout("rdi") $message => $back,
            inlateout("rsi") $slots => $slots_back,
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            clobber_abi("sysv64"),
        )
    };
}

/// Enters the coroutine whose context is in `slots.co_sp` with `message`;
/// returns the message it suspends with.
///
/// # Safety
///
/// * `slots.co_sp` holds a suspended context (from [`init`] or a suspend)
///   that nobody else resumes at the same time;
/// * the coroutine comes back through these same `slots`.
#[inline(always)]
pub(crate) unsafe fn resume(slots: *mut Slots, message: usize) -> usize {
    let back: usize;
    // SAFETY:
    // * the caller guarantees a valid suspended context; the landing code
    //   on the other side records our stack pointer in `slots.parent_sp`
    //   and the coroutine returns to it with `rsp` exactly as the `call`
    //   left it, so this block ends with our stack as it began;
    // * everything the other side may change is declared: caller-saved
    //   registers (clobber_abi), r12-r15 (lateout), rbx/rbp (pushed here).
    unsafe {
        switch_asm!(
            message => back,
            slots,
            "push rbp",
            "push rbx",
            "mov rax, [rsi]",
            "call [rax]",
            "pop rbx",
            "pop rbp",
        );
    }
    back
}

/// Suspends the running coroutine back to its enterer with `message`;
/// returns the message of the next resume.
///
/// # Safety
///
/// * We run on the coroutine whose slots these are, entered through
///   [`resume`] (or the C ABI's enter), so `slots.parent_sp` holds the
///   enterer's context.
#[inline(always)]
pub(crate) unsafe fn suspend(slots: *mut Slots, message: usize) -> usize {
    // SAFETY:
    // * the caller's contract.
    unsafe { suspend_to(slots, message) }.0
}

/// [`suspend`], also returning the slots the next resume came through
/// (the landing code finds them in `rsi`): a parked trampoline learns from
/// them which coroutine it runs next (see `body::trampoline_loop`).
///
/// # Safety
///
/// * As [`suspend`].
#[inline(always)]
pub(crate) unsafe fn suspend_to(slots: *mut Slots, message: usize) -> (usize, *mut Slots) {
    let back: usize;
    let resumed_through: *mut Slots;
    // SAFETY:
    // * per the caller, `parent_sp` is a suspended context waiting for us;
    // * the landing code at `2:` restores our stack pointer from `rax` (the
    //   resumer passes `co_sp` there) and pops what we pushed, so the block
    //   ends with our stack as it began; clobbers as in `resume`.
    unsafe {
        switch_asm!(
            message => back,
            slots => resumed_through,
            "push rbp",
            "push rbx",
            "lea rax, [rip + 2f]",
            "push rax",
            "mov [rsi], rsp",
            "mov rsp, [rsi + 8]",
            "ret",
            "2:",
            "mov [rsi + 8], rsp",
            "lea rsp, [rax + 8]",
            "pop rbx",
            "pop rbp",
        );
    }
    (back, resumed_through)
}

/// The function a fresh stack starts in. It must never return: when it
/// is done it suspends for the last time and is never resumed.
/// Its second argument is the slots its first resume came through.
pub(crate) type StackMain = unsafe extern "sysv64" fn(arg: usize, slots: *mut Slots) -> !;

/// Lays out a fresh stack whose top (exclusive) is `top` so that the first
/// [`resume`] calls `main(arg, slots)` on it; returns its context for `co_sp`.
///
/// # Safety
///
/// * `top - 32 .. top` is writable memory of a stack nobody runs on, with
///   room below for `main`'s frames.
pub(crate) unsafe fn init(top: usize, main: StackMain, arg: usize) -> usize {
    let top = top & !15;
    let sp = top - 24;
    let words = sp as *mut usize;
    // SAFETY:
    // * the three words are inside `top - 32 .. top` (caller);
    // * the layout is what `start` pops: its address (the resume pc),
    //   `main`, `arg`; `top` is 16-aligned so `start`'s call is aligned.
    unsafe {
        words.write(start as *const () as usize);
        words.add(1).write(main as usize);
        words.add(2).write(arg);
    }
    sp
}

/// The resume pc of a fresh stack: lands as the protocol says, then calls
/// `main(arg, slots)` (`rsi` still holds the resumer's slots) with an
/// aligned stack and a null frame pointer (the end of
/// the frame chain for debuggers and unwinders).
#[unsafe(naked)]
unsafe extern "sysv64" fn start() {
    naked_asm!(
        // No caller: unwinders and debuggers stop here.
        ".cfi_startproc",
        ".cfi_undefined rip",
        "mov [rsi + 8], rsp",
        "lea rsp, [rax + 8]",
        "pop rcx",
        "pop rdi",
        "xor ebp, ebp",
        "call rcx",
        "ud2",
        ".cfi_endproc",
    )
}
