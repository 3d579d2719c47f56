//! What must crash or be refused, each in a child process (this test binary
//! run again with CORRAL_CHILD naming the case): stack overflow on both guard
//! kinds, a stack refused under a low RLIMIT_AS, the mprotect path running
//! out of vm.max_map_count.

use std::process::{Command, Output};

use corral_runtime::{install_supported, yield_now, Builder, Coroutine, GuardKind};

const CHILD: &str = "CORRAL_CHILD";

/// Runs `test` of this binary again in a child with CORRAL_CHILD=`case`.
fn child(test: &str, case: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .output()
        .unwrap()
}

fn in_child() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// Recurses until the stack overflows (the depth check never stops it in practice).
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = [n as u8; 512];
    std::hint::black_box(&buf);
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    std::hint::black_box(recurse(n + 1)) + buf[7] as u64
}

fn overflow_case(kind: GuardKind) {
    let co = Builder::new().guard(kind).stack_size(64 * 1024).spawn(|| {
        std::hint::black_box(recurse(0));
    });
    co.enter();
    unreachable!("the overflow must abort the process");
}

fn check_overflow(test: &str, kind: GuardKind) {
    if let Some(case) = in_child() {
        assert_eq!(case, kind.name());
        overflow_case(kind);
    }
    let out = child(test, kind.name());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the overflowing child exited successfully"
    );
    assert!(
        stderr.contains("coroutine stack overflow")
            && stderr.contains("guard page")
            && stderr.contains(kind.name()),
        "child stderr does not report the overflow:\n{stderr}"
    );
}

#[test]
fn stack_overflow_is_reported_with_installed_guard() {
    if !install_supported() {
        eprintln!(
            "SKIPPED: MADV_GUARD_INSTALL is not supported by this kernel (Linux 6.13+ needed)"
        );
        return;
    }
    check_overflow(
        "stack_overflow_is_reported_with_installed_guard",
        GuardKind::Install,
    );
}

#[test]
fn stack_overflow_is_reported_with_mprotect_guard() {
    check_overflow(
        "stack_overflow_is_reported_with_mprotect_guard",
        GuardKind::Mprotect,
    );
}

fn vm_size_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn stack_refused_under_low_rlimit_as_is_an_error() {
    if in_child().is_some() {
        let limit = vm_size_bytes() + (32 << 20);
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: `lim` is a valid rlimit; lowering our own soft limit is allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
        for kind in [GuardKind::Mprotect, GuardKind::probed()] {
            let err = Builder::new()
                .guard(kind)
                .stack_size(256 << 20)
                .try_spawn(|| {})
                .expect_err("a 256 MiB stack under a 32 MiB allowance must be refused");
            let msg = err.to_string();
            assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory, "{msg}");
            assert!(
                msg.contains("RLIMIT_AS") && msg.contains("coroutine stack"),
                "{msg}"
            );
            // The infallible form panics with the same message.
            let panic = std::panic::catch_unwind(|| {
                Builder::new()
                    .guard(kind)
                    .stack_size(256 << 20)
                    .spawn(|| {})
            })
            .expect_err("spawn must panic");
            let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(text.contains("RLIMIT_AS"), "{text}");
        }
        // The process is alive and small stacks still work.
        let co = Coroutine::new(|| {});
        co.enter();
        println!("CHILD-OK refused cleanly");
        return;
    }
    let out = child("stack_refused_under_low_rlimit_as_is_an_error", "rlimit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mprotect_path_refuses_cleanly_at_max_map_count() {
    if in_child().is_some() {
        let mut live = Vec::new();
        let err = loop {
            match Builder::new()
                .guard(GuardKind::Mprotect)
                .stack_size(16 * 1024)
                .try_spawn(yield_now)
            {
                Ok(co) => live.push(co),
                Err(err) => break err,
            }
            assert!(live.len() < 1_000_000, "mappings never ran out");
        };
        let msg = err.to_string();
        assert!(msg.contains("vm.max_map_count"), "{msg}");
        assert!(
            msg.contains(&format!("{} coroutine stacks live", live.len())),
            "{msg}"
        );
        println!("CHILD-OK {} live: {msg}", live.len());
        return;
    }
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65530);
    if max > 131_072 {
        eprintln!(
            "SKIPPED mprotect_path_refuses_cleanly_at_max_map_count: vm.max_map_count = {max} \
             would need {} stacks to run out (stack_refused_under_low_rlimit_as_is_an_error \
             still covers a refused mprotect stack)",
            max / 2
        );
        return;
    }
    let out = child("mprotect_path_refuses_cleanly_at_max_map_count", "maps");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{}",
        stdout
            .lines()
            .find(|l| l.contains("CHILD-OK"))
            .unwrap_or("")
    );
}
