//! A driver for instruction-count profiles of the pooled lifecycle:
//! `valgrind --tool=callgrind target/release/examples/lifecycle_profile N`
//! runs N pooled create+enter+terminate cycles (default 100000); the
//! difference between two counts divided by the difference in N is the
//! instruction cost of one lifecycle. Optional second argument: `mprotect`.

use std::hint::black_box;

use corral_runtime::{Builder, GuardKind};

#[inline(never)]
fn pooled_once(builder: Builder) {
    builder.spawn(|| black_box(())).enter();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(100_000, |a| a.parse().expect("a count"));
    let guard = match args.next().as_deref() {
        Some("mprotect") => GuardKind::Mprotect,
        _ => GuardKind::probed(),
    };
    let builder = Builder::new().guard(guard);
    for _ in 0..n {
        pooled_once(builder);
    }
    println!("{n} pooled lifecycles ({guard})");
}
