//! A stack that describes itself: its [`Stack`] and the trampoline's kept
//! boundary live in the stack's own top cache line, and a body names its
//! stack with one word ([`StackWord`]). Exchanging two bodies' stacks (see
//! `body::swap_parked_stacks`) is then two words per header, and nothing
//! reads a stack's memory unless it runs or is trimmed.
//!
//! ```text
//!  bottom                                                   top
//!  | guard | deep pages ...  | kept pages ... frames | StackMeta |
//! ```

use std::ptr;

use super::{Bounds, Stack};

/// What a stack says about itself, in its top line.
#[repr(C, align(64))]
struct StackMeta {
    stack: Stack,
    /// Lowest address the parked trampoline may need (its canary sits
    /// there); 0 until the trampoline first ran.
    keep_from: usize,
}

/// Names a placed stack: the address of its [`StackMeta`], and in bit 0
/// whether an entry ran on the stack since the release hook last looked
/// ([`StackWord::ran`]). Owned by one body; copying the word does not
/// copy the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct StackWord(usize);

const RAN: usize = 1;

impl StackWord {
    /// Writes `stack`'s description into its top line. Returns the word
    /// and the address below which the stack is free for frames.
    pub(crate) fn place(stack: Stack) -> (StackWord, usize) {
        let meta = (stack.top() - std::mem::size_of::<StackMeta>()) & !63;
        debug_assert!(
            meta >= stack.bounds().guard_end(),
            "stack too small for its meta"
        );
        // SAFETY:
        // * `meta` is 64-aligned, inside the stack's usable pages (stacks are
        //   at least MIN_STACK_SIZE above the guard), and nothing runs on the
        //   stack yet; the stack moves in and is owned by the word from now.
        unsafe {
            ptr::write(
                meta as *mut StackMeta,
                StackMeta {
                    stack,
                    keep_from: 0,
                },
            )
        };
        (StackWord(meta), meta)
    }

    fn meta(self) -> *mut StackMeta {
        (self.0 & !RAN) as *mut StackMeta
    }

    /// Where the stack lies.
    ///
    /// # Safety
    ///
    /// * The word names a placed stack that is still mapped (its owner has
    ///   not taken it back with [`take`](StackWord::take)).
    pub(crate) unsafe fn bounds(self) -> Bounds {
        // SAFETY:
        // * a placed, mapped stack (caller): its meta is initialised.
        unsafe { (*self.meta()).stack.bounds() }
    }

    /// Whether an entry ran on the stack since [`look`](StackWord::look).
    pub(crate) fn ran(self) -> bool {
        self.0 & RAN != 0
    }

    /// The word with [`ran`](StackWord::ran) set.
    pub(crate) fn with_ran(self) -> StackWord {
        StackWord(self.0 | RAN)
    }

    /// The kept boundary (0 before the trampoline first ran), and the word
    /// with [`ran`](StackWord::ran) cleared.
    ///
    /// # Safety
    ///
    /// * As [`bounds`](StackWord::bounds).
    pub(crate) unsafe fn look(self) -> (usize, StackWord) {
        // SAFETY:
        // * as `bounds`.
        (
            unsafe { (*self.meta()).keep_from },
            StackWord(self.0 & !RAN),
        )
    }

    /// Records the trampoline's kept boundary.
    ///
    /// # Safety
    ///
    /// * As [`bounds`](StackWord::bounds), and the caller owns the stack.
    pub(crate) unsafe fn set_keep_from(self, keep_from: usize) {
        // SAFETY:
        // * as `bounds`; owned (caller).
        unsafe { (*self.meta()).keep_from = keep_from };
    }

    /// Takes the [`Stack`] back out of its top line (dropping it unmaps
    /// the stack); the word names nothing afterwards.
    ///
    /// # Safety
    ///
    /// * As [`bounds`](StackWord::bounds); nothing runs on the stack, and the
    ///   word is not used again.
    pub(crate) unsafe fn take(self) -> Stack {
        // SAFETY:
        // * as `bounds`; read once, and the word is not used again (caller),
        //   so the stack has one owner.
        unsafe { ptr::read(ptr::addr_of!((*self.meta()).stack)) }
    }
}
