//! Runs `make -C ffi check` (the C tests, header checks and symbol checks) as
//! part of `cargo test --workspace`.
//!
//! Cargo holds the lock on its target directory while tests run, so the
//! Makefile must not run cargo on the same directory again (it would wait
//! forever). To build this test cargo already compiled the crate with all its
//! crate types, leaving `libcorral_ffi.a` and `.so` in `<target>/<profile>/deps`
//! (fresh: same compilation as the rlib this test links); they are handed to
//! make through `CORRAL_LIB_DIR`. Should they be missing, make builds them
//! with cargo in a separate target directory (`<target>/ffi-nested`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `<target>/<profile>`: the directory holding `deps/` and this test binary.
fn profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

#[test]
fn make_check_passes() {
    let ffi_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile_dir = profile_dir();
    let mut make = Command::new("make");
    make.arg("-C").arg(ffi_dir).arg("check").arg(format!(
        "BUILD_DIR={}",
        profile_dir.join("ffi-check").display()
    ));

    let deps = profile_dir.join("deps");
    let prebuilt = ["libcorral_ffi.a", "libcorral_ffi.so"]
        .iter()
        .all(|name| deps.join(name).is_file());
    if prebuilt {
        make.arg(format!("CORRAL_LIB_DIR={}", deps.display()));
    } else {
        let nested = profile_dir.parent().expect("target dir").join("ffi-nested");
        eprintln!(
            "c_check: no libcorral_ffi.{{a,so}} in {}; make builds them in {}",
            deps.display(),
            nested.display()
        );
        make.arg("PROFILE=debug").env("CARGO_TARGET_DIR", nested);
    }

    let output = make
        .output()
        .expect("running `make` failed: make and a C compiler are needed for the C tests");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "make -C ffi check failed: {}",
        output.status
    );
    for suite in [
        "test_coroutine: all passed",
        "test_misuse: all passed",
        "test_io: all passed",
    ] {
        assert!(
            stdout.contains(suite),
            "missing `{suite}` in the output of make check"
        );
    }
}
