//! Enter and yield for a C ABI, written so that neither costs a
//! mispredicted return.
//!
//! A C program calls `enter` and `yield` as functions. If they returned
//! with `ret`, each return would pop the wrong entry from the CPU's
//! return-stack buffer (the coroutine's and the enterer's calls
//! interleave), and an enter+yield round trip would pay two mispredictions:
//! more than the rest of the switch. So both are written in assembly and
//! leave every frame with an indirect jump (`pop rcx; jmp rcx`), which the
//! branch target predictor gets right. They follow the switch protocol of
//! `switch.rs`, so a coroutine entered from C may yield from Rust and the
//! other way round.
//!
//! The common cases make no call at all: enter claims the coroutine (the
//! same compare-and-swap as `Coroutine::try_enter`, which also catches
//! misuse), swaps the current coroutine in the thread-local declared in
//! assembly (tls.rs), switches, and on a yield clears the RUNNING bit; yield
//! reads the current coroutine and switches. Rust halves, called in pairs
//! with their returns, handle the rest: a thread's first enter (signal
//! stack, counter block), a termination (the body goes back to its pool),
//! a panic or a body's exit, and refusals.
//!
//! A refusal (NULL handle, entering a running or terminated coroutine,
//! yielding outside a coroutine) calls the caller's handler with a
//! [`Refusal`] and returns what the handler returns: the C ABI crate maps it
//! to its errno and message. A panic of Rust code in the coroutine aborts
//! the process (it cannot unwind into C).

use std::arch::naked_asm;
use std::ffi::c_void;
use std::ptr::NonNull;

use crate::body::{Event, Header, PARKED_OFFSET, SLOTS_OFFSET};
use crate::coroutine::{
    enter_begin_raw, enter_end, finish, slots_of, ADDR_BITS, ADDR_PART, GEN_BITS, LOW_BITS,
};
use crate::tls;
use crate::EnterError;

/// Saves a C caller's callee-saved registers but rbx, which the two entry
/// points save first (the other side of a switch clobbers them all).
macro_rules! push_callee_saved_but_rbx {
    () => {
        "push rbp\npush r12\npush r13\npush r14\npush r15"
    };
}

/// Restores what [`push_callee_saved_but_rbx`] saved.
macro_rules! pop_callee_saved_but_rbx {
    () => {
        "pop r15\npop r14\npop r13\npop r12\npop rbp"
    };
}

/// Why a C enter or yield did not switch.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The handle was NULL.
    Null = 1,
    /// The coroutine is running (QEMU's "re-entered recursively").
    Running = 2,
    /// The coroutine has terminated.
    Terminated = 3,
    /// `yield` was called outside a coroutine.
    NotInCoroutine = 4,
}

/// A refusal handler: its return value is what `enter`/`yield` return.
pub type RefusalHandler = extern "C" fn(Refusal) -> i32;

/// Return values of the Rust halves below this are refusals, not slots.
const SMALLEST_SLOTS: usize = 4096;

/// What `c_enter_begin` returns: in `rax` the slots to resume or a
/// [`Refusal`] code (below [`SMALLEST_SLOTS`]); in `rdx` the coroutine that
/// was current before, which the assembly keeps across the switch.
#[repr(C)]
struct Begun {
    slots: usize,
    prev: *const Header,
}

/// Rust half of `enter` once the assembly claimed the coroutine: make it
/// current (and set the thread up on its first enter).
///
/// # Safety
///
/// * The caller holds the RUNNING bit of `header`'s coroutine.
unsafe extern "sysv64" fn c_enter_claimed(header: NonNull<Header>) -> Begun {
    // SAFETY:
    // * headers are type-stable.
    let (prev, _) = tls::enter_replace_current(unsafe { header.as_ref() });
    Begun {
        slots: slots_of(header) as usize,
        prev,
    }
}

/// Rust half of `enter` when the assembly's claim did not succeed: NULL,
/// refusals, and claims lost to a race, through the general path.
///
/// # Safety
///
/// * `handle` is NULL or a handle of `Coroutine::into_raw`.
unsafe extern "sysv64" fn c_enter_begin(handle: *mut c_void) -> Begun {
    let refused = |r: Refusal| Begun {
        slots: r as usize,
        prev: std::ptr::null(),
    };
    if handle.is_null() {
        return refused(Refusal::Null);
    }
    // SAFETY:
    // * a non-null handle of `into_raw` (caller).
    match unsafe { enter_begin_raw(handle as usize) } {
        Ok((header, prev)) => Begun {
            slots: slots_of(header) as usize,
            prev,
        },
        Err(EnterError::Running) => refused(Refusal::Running),
        Err(EnterError::Terminated) => refused(Refusal::Terminated),
    }
}

/// Rust half of `enter` after the switch, for every event but a yield
/// (which the assembly handles itself): a termination (the body goes back
/// to the pool), a panic (it cannot unwind into C: the process aborts with
/// its message), a body's exit. The assembly has restored the current
/// coroutine to `prev` already; `enter_end` sets it again (harmless).
///
/// # Safety
///
/// * `header`'s coroutine was claimed by this thread's `enter`, which
///   switched into it, and it came back with `message`; `prev` was the
///   current coroutine before.
unsafe extern "sysv64" fn c_enter_end(
    header: NonNull<Header>,
    prev: *const Header,
    message: usize,
) {
    enter_end(header, prev, tls::cache(), message);
}

/// Rust half of `enter` when the coroutine's entry returned (the common
/// case after a yield): the body goes back to its pool.
///
/// # Safety
///
/// * As `c_enter_end`, with the `Finished` event.
unsafe extern "sysv64" fn c_enter_finished(header: NonNull<Header>) {
    finish::<true>(header, true, tls::cache());
}

/// Enters the coroutine of `handle` (a `Coroutine::into_raw` word) until it
/// yields or terminates; returns 0, or what `refused` returns.
///
/// # Safety
///
/// * `handle` is NULL or a handle made by [`Coroutine::into_raw`](crate::Coroutine::into_raw);
/// * called from C (or Rust) as an ordinary `extern "C"` function.
#[unsafe(naked)]
pub unsafe extern "C" fn enter(handle: *mut c_void, refused: RefusalHandler) -> i32 {
    naked_asm!(
        // Claim first, before any store of ours: a locked instruction
        // waits for every earlier store to drain. The same claim as
        // `try_claim_warm`: a non-null handle whose generation bits are the
        // state word's, not running, CAS on the state just read.
        "movabs rcx, {addr_part}",
        "and rcx, rdi",
        "jz 4f",
        // rdx = the handle's generation bits as the state word has them
        // (`generation << 1`): the high 16 at 9.., the low 8 at 1...
        "mov rdx, rdi",
        "shr rdx, {addr_bits} - {low_bits} - 1",
        "and rdx, -{low_bits_state}",
        "movzx r8d, dil",
        "lea rdx, [rdx + r8 * 2]",
        "mov rax, [rcx]",
        "mov r9, rax",
        "and r9, {state_mask}",
        "cmp r9, rdx",
        "jne 4f",
        "lea r8, [rax + 1]",
        "lock cmpxchg [rcx], r8",
        "jne 4f",
        // Claimed. Our caller's rbx goes first: rbx then keeps the
        // handler across calls. Aligns rsp for the calls below.
        "push rbx",
        "mov rbx, rsi",
        // Make it current (in assembly on a thread set up before; the Rust
        // half sets a thread up on its first enter).
        // (The warm flag is the word after `current`: tls.rs declares them
        // together.)
        "mov r10, qword ptr [rip + corral_runtime_current_v1@GOTTPOFF]",
        "cmp qword ptr fs:[r10 + 8], 0",
        "je 6f",
        "mov rdx, qword ptr fs:[r10]",
        "mov qword ptr fs:[r10], rcx",
        "lea rax, [rcx + {slots}]",
        // rax: the slots to resume; rdx: the previous current coroutine.
        "5:",
        "push rdx",
        // The rest of our caller's callee-saved registers (the coroutine
        // clobbers them).
        push_callee_saved_but_rbx!(),
        // Resume (switch.rs protocol); back here when it switches back.
        "mov rsi, rax",
        "mov rax, [rsi]",
        "call [rax]",
        pop_callee_saved_but_rbx!(),
        "pop rdx",
        // The coroutine we entered is still the current one (whatever it
        // entered in turn gave it back): its header; then the previous one
        // is current again.
        "mov r10, qword ptr [rip + corral_runtime_current_v1@GOTTPOFF]",
        "mov rsi, qword ptr fs:[r10]",
        "mov qword ptr fs:[r10], rdx",
        "cmp rdi, {yielded}",
        "jne 7f",
        // Yielded: its entry is under way (not parked in its loop: no
        // stack lending, see hot.rs); it is off its stack, anyone may
        // enter it. Only the RUNNING holder (us) writes the state word: a
        // plain RMW.
        "mov byte ptr [rsi + {parked}], 0",
        "and qword ptr [rsi], -2",
        "pop rbx",
        "xor eax, eax",
        "pop rcx",
        "jmp rcx",
        // The entry returned: the body goes back to its pool (Rust half).
        "7:",
        "cmp rdi, {finished}",
        "jne 8f",
        "mov rdi, rsi",
        "call {finished_fn}",
        "pop rbx",
        "xor eax, eax",
        "pop rcx",
        "jmp rcx",
        // Any other event: the Rust half.
        "8:",
        "mov rax, rdi",
        "mov rdi, rsi",
        "mov rsi, rdx",
        "mov rdx, rax",
        "call {end}",
        "pop rbx",
        "xor eax, eax",
        "pop rcx",
        "jmp rcx",
        // A thread's first enter: the Rust half makes it current.
        "6:",
        "mov rdi, rcx",
        "call {claimed}",
        "jmp 5b",
        // Anything else: the general path (refusals, NULL, races).
        "4:",
        "push rbx",
        "mov rbx, rsi",
        "call {begin}",
        "cmp rax, {smallest}",
        "jae 5b",
        // Refused: the handler's value is ours.
        "mov edi, eax",
        "call rbx",
        "pop rbx",
        "ret",
        claimed = sym c_enter_claimed,
        addr_part = const ADDR_PART,
        addr_bits = const ADDR_BITS,
        low_bits = const LOW_BITS,
        low_bits_state = const 1u64 << (LOW_BITS + 1),
        state_mask = const (1u64 << (GEN_BITS + 1)) - 1,
        begin = sym c_enter_begin,
        end = sym c_enter_end,
        smallest = const SMALLEST_SLOTS,
        slots = const SLOTS_OFFSET,
        parked = const PARKED_OFFSET,
        yielded = const Event::Yielded as usize,
        finished = const Event::Finished as usize,
        finished_fn = sym c_enter_finished,
    )
}

/// Yields the running coroutine to whoever entered it; returns 0 when it is
/// entered again, or at once what `refused` returns outside a coroutine.
///
/// # Safety
///
/// * Called from C (or Rust) as an ordinary `extern "C"` function.
#[unsafe(naked)]
pub unsafe extern "C" fn yield_(refused: RefusalHandler) -> i32 {
    naked_asm!(
        // The running coroutine, from the thread-local (tls.rs).
        "mov r10, qword ptr [rip + corral_runtime_current_v1@GOTTPOFF]",
        "mov rax, qword ptr fs:[r10]",
        "test rax, rax",
        "jz 3f",
        // Our caller's callee-saved registers, restored when we are resumed.
        "push rbx",
        push_callee_saved_but_rbx!(),
        // Suspend (switch.rs protocol): resume pc on top, then to the enterer.
        "lea rsi, [rax + {slots}]",
        "lea rax, [rip + 2f]",
        "push rax",
        "mov [rsi], rsp",
        "mov rsp, [rsi + {parent_sp}]",
        "mov edi, {yielded}",
        "pop rcx",
        "jmp rcx",
        // Resumed: land, skip the resume pc, restore, back to C.
        "2:",
        "mov [rsi + {parent_sp}], rsp",
        "lea rsp, [rax + 8]",
        pop_callee_saved_but_rbx!(),
        "pop rbx",
        "xor eax, eax",
        "pop rcx",
        "jmp rcx",
        // Outside a coroutine: the handler's value is ours (a tail call).
        "3:",
        "mov rax, rdi",
        "mov edi, {outside}",
        "jmp rax",
        slots = const SLOTS_OFFSET,
        outside = const Refusal::NotInCoroutine as i32,
        parent_sp = const crate::switch::PARENT_SP,
        yielded = const Event::Yielded as usize,
    )
}
