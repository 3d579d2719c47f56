//! `cargo run --release --example kvstore [PATH] [--backend B]`: a log-structured
//! key-value store whose client requests are coroutines doing coroutine I/O.

mod store;

use corral::aio::block::{BackendKind, OpenOptions};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut backend = BackendKind::IoUring;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => {
                backend = args
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .map_err(std::io::Error::other)?
            }
            _ => path = Some(arg),
        }
    }
    let dir = tempfile::tempdir()?;
    let path = path
        .map(Into::into)
        .unwrap_or_else(|| dir.path().join("kv.log"));
    let _ = std::fs::remove_file(&path);
    let opts = OpenOptions {
        backend,
        ..OpenOptions::default()
    };
    let start = Instant::now();
    let requests = store::workload(&path, &opts, 64, 200)?;
    let secs = start.elapsed().as_secs_f64();
    println!("kvstore: {requests} requests from 64 client coroutines on {backend} in {secs:.3} s ({:.0} requests/s)", requests as f64 / secs);
    Ok(())
}
