//! [`BlockShuffle`]: random block numbers without repeats, like fio's default random map.
//!
//! `corral bench --random` compares with `fio --rw=randread`, which by default reads every
//! block at most once per pass over the file. Drawing with replacement instead (plain
//! random numbers) reads some blocks twice in a run -- 30% of 200,000 draws over 262,144
//! blocks -- and a second read of a block can be served from a cache below the guest (the
//! host's page cache under a virtual disk), which would flatter us. This walks the blocks
//! in a scrambled order instead: a counter mapped through a bijection of the smallest
//! power-of-two range that holds them, skipping numbers past the end (fewer than half),
//! so each pass visits every block exactly once. A handful of instructions per request.

/// A permutation of `0..blocks`, passed through again (in another order) when exhausted.
#[derive(Debug)]
pub(crate) struct BlockShuffle {
    blocks: u64,
    /// `2^bits - 1`, the smallest such value `>= blocks - 1`.
    mask: u64,
    shift: u32,
    counter: u64,
    key: u64,
}

impl BlockShuffle {
    /// Block numbers in `0..blocks` (at least one block).
    pub(crate) fn new(blocks: u64, seed: u64) -> BlockShuffle {
        let blocks = blocks.max(1);
        let bits = u64::BITS - (blocks - 1).leading_zeros();
        BlockShuffle {
            blocks,
            mask: if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            },
            shift: (bits / 2).max(1),
            counter: 0,
            key: seed,
        }
    }

    /// The next block number.
    #[inline]
    pub(crate) fn next_block(&mut self) -> u64 {
        loop {
            let x = self.scramble(self.counter);
            self.counter = (self.counter + 1) & self.mask;
            if self.counter == 0 {
                // A new pass, in a new order.
                self.key = self.key.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
            }
            if x < self.blocks {
                return x;
            }
        }
    }

    /// A bijection of `0..=mask`: xor with the key, then xor-shifts and multiplications
    /// by odd constants, each invertible modulo a power of two.
    #[inline(always)]
    fn scramble(&self, x: u64) -> u64 {
        let m = self.mask;
        let mut x = (x ^ self.key) & m;
        x ^= x >> self.shift;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd) & m;
        x ^= x >> self.shift;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53) & m;
        x ^= x >> self.shift;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::BlockShuffle;

    #[test]
    fn each_pass_visits_every_block_once() {
        for blocks in [1u64, 2, 3, 7, 64, 1000, 4096, 262_144] {
            let mut shuffle = BlockShuffle::new(blocks, 0x1234_5678);
            for _pass in 0..2 {
                let mut seen = vec![false; blocks as usize];
                for _ in 0..blocks {
                    let b = shuffle.next_block();
                    assert!(b < blocks, "{b} out of 0..{blocks}");
                    assert!(!seen[b as usize], "block {b} of {blocks} twice in a pass");
                    seen[b as usize] = true;
                }
            }
        }
    }

    #[test]
    fn the_order_is_not_sequential() {
        let mut shuffle = BlockShuffle::new(262_144, 7);
        let first: Vec<u64> = (0..16).map(|_| shuffle.next_block()).collect();
        let steps_of_one = first.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(steps_of_one < 4, "{first:?}");
    }
}
