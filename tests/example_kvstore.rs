//! Runs the example key-value store's workload on every backend the kernel allows.

#[path = "../examples/kvstore/store.rs"]
#[allow(dead_code)]
mod store;

use corral::aio::block::{BackendKind, OpenOptions};
use corral::aio::AioContext;

#[test]
fn kvstore_workload_on_every_backend() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for backend in [
        BackendKind::Threads,
        BackendKind::LinuxAio,
        BackendKind::IoUring,
    ] {
        if let Err(err) = backend.create(&ctx) {
            eprintln!("!!! SKIPPED kvstore on {backend}: the kernel refuses it ({err})");
            continue;
        }
        let path = dir.path().join(format!("kv-{backend}.log"));
        let opts = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let served =
            store::workload(&path, &opts, 16, 50).unwrap_or_else(|err| panic!("{backend}: {err}"));
        assert_eq!(served, 16 * 50 * 2);
    }
}
