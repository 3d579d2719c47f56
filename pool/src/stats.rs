//! The public counters.

/// A pool's counters, summed on demand by [`Pool::stats`](crate::Pool::stats).
///
/// The sum is exact when no thread is using the pool; while threads run it is
/// a snapshot whose fields may be a few operations apart. Invariants (when
/// quiescent): `created + reused` is the number of objects handed out, and
/// every object ever created is exactly one of: in a user's hands, `pooled`,
/// or `dropped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Objects made by a `create` closure because the pool had none.
    pub created: u64,
    /// Objects handed out again from the pool.
    pub reused: u64,
    /// Objects the pool dropped: over the global cap, discarded, or trimmed.
    pub dropped: u64,
    /// Batches a thread took from the global list.
    pub batches_stolen: u64,
    /// Batches a thread gave to the global list (over its local cap, or at exit).
    pub batches_released: u64,
    /// Objects currently held by the pool (all local lists + global list).
    pub pooled: u64,
}

impl PoolStats {
    /// Objects currently outside the pool, in users' hands:
    /// `created - pooled - dropped` (meaningful when quiescent).
    pub fn in_use(&self) -> u64 {
        self.created
            .wrapping_sub(self.pooled)
            .wrapping_sub(self.dropped)
    }
}
