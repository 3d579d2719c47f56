//! The `corral` command line: benchmarks of the whole stack.
fn main() {
    println!("corral bench: not yet implemented");
}
