//! Pool tuning.

/// Tuning of a [`Pool`](crate::Pool); every count is in objects.
///
/// Values are sanitised when the pool is built: `batch_size` is at least 1 and
/// `local_cap` at least `batch_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Objects moved between a thread and the global list in one go.
    ///
    /// Moving a batch between threads costs one CAS on the global list head,
    /// an epoch pin, two small allocations and a handful of cache misses on
    /// lines the other thread wrote (several hundred ns when both threads
    /// are busy); 128 objects (QEMU 9.0's batch) spread that to a few ns per
    /// object. Smaller batches strand fewer objects per thread, larger ones
    /// amortise better.
    pub batch_size: usize,
    /// Objects a thread may keep in its own list before it gives the oldest
    /// batch back to the global list.
    ///
    /// Two batches (QEMU 9.0's figure): after a release the thread still holds
    /// one batch plus one object, so a thread that alternates get and put
    /// around a batch boundary never ships a batch back and forth.
    pub local_cap: usize,
    /// Objects the global list may hold; what a release or a thread exit
    /// would put over it is dropped (and counted in
    /// [`PoolStats::dropped`](crate::PoolStats::dropped)).
    ///
    /// 16,384 (128 default batches) bounds what an idle pool keeps alive. It
    /// also stays under half of Linux's default `vm.max_map_count` budget
    /// (`(65530 - 5000) / 2 = 30265`, the rule QEMU 9.0 adopted) for objects
    /// that own two memory mappings, such as coroutine stacks with an
    /// `mprotect` guard page. Change it at run time with
    /// [`Pool::set_global_cap`](crate::Pool::set_global_cap).
    pub global_cap: usize,
}

impl PoolConfig {
    /// The defaults: batches of 128, two batches per thread, 16,384 objects
    /// globally (the rationale is on each field).
    pub const DEFAULT: PoolConfig = PoolConfig {
        batch_size: 128,
        local_cap: 256,
        global_cap: 16 * 1024,
    };

    /// `self` with `batch_size >= 1` and `local_cap >= batch_size`.
    pub const fn sanitized(self) -> PoolConfig {
        let batch_size = if self.batch_size == 0 {
            1
        } else {
            self.batch_size
        };
        let local_cap = if self.local_cap < batch_size {
            batch_size
        } else {
            self.local_cap
        };
        PoolConfig {
            batch_size,
            local_cap,
            global_cap: self.global_cap,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::PoolConfig;

    #[test]
    fn sanitized_fixes_degenerate_values() {
        let c = PoolConfig {
            batch_size: 0,
            local_cap: 0,
            global_cap: 0,
        }
        .sanitized();
        assert_eq!((c.batch_size, c.local_cap, c.global_cap), (1, 1, 0));
        assert_eq!(PoolConfig::DEFAULT.sanitized(), PoolConfig::DEFAULT);
    }
}
