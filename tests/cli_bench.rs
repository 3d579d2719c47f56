//! `corral bench` end to end: the JSON line has the documented fields and sane values.

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "corral bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_string()
}

fn field(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let rest = &json[json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len()..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"').parse().unwrap_or(f64::NAN)
}

#[test]
fn json_line_has_the_documented_fields() {
    for mode in ["pooled", "heap"] {
        let json = bench(&[
            "--backend",
            "null",
            "-c",
            "5000",
            "-d",
            "16",
            "--mode",
            mode,
            "--json",
        ]);
        assert!(json.contains(&format!("\"mode\":\"{mode}\"")), "{json}");
        assert!(json.contains("\"backend\":\"null\""), "{json}");
        assert_eq!(field(&json, "requests"), 5000.0);
        assert_eq!(field(&json, "depth"), 16.0);
        assert_eq!(field(&json, "size"), 4096.0);
        assert_eq!(field(&json, "errors"), 0.0);
        for name in [
            "seconds",
            "iops",
            "lat_us_p50",
            "lat_us_p99",
            "cpu_user_s",
            "cpu_sys_s",
            "cpu_us_per_req",
        ] {
            assert!(field(&json, name) >= 0.0, "{name} in {json}");
        }
        assert!(field(&json, "iops") > 0.0);
    }
}

#[test]
fn reads_a_file_with_each_kernel_backend() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("bench.img");
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    let path = path.to_str().unwrap();
    for backend in ["threads", "linux-aio", "io-uring"] {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args([
                "bench",
                "--backend",
                backend,
                "-c",
                "2000",
                "--random",
                "--json",
                path,
            ])
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("os error"), "{backend}: {err}");
            eprintln!("!!! SKIPPED corral bench --backend {backend}: {err}");
            continue;
        }
        let json = String::from_utf8(out.stdout).unwrap();
        let json = json.lines().last().unwrap();
        assert_eq!(field(json, "requests"), 2000.0, "{backend}");
        assert_eq!(field(json, "errors"), 0.0, "{backend}");
    }
}

#[test]
fn a_timed_run_lasts_its_runtime_and_counts_what_it_issued() {
    for backend in ["null", "null-bh"] {
        let json = bench(&["--backend", backend, "-t", "0.3", "--json"]);
        let seconds = field(&json, "seconds");
        assert!(seconds >= 0.3, "{backend} stopped early: {json}");
        assert!(seconds < 30.0, "{backend} did not stop: {json}");
        assert!(field(&json, "requests") > 0.0, "{json}");
        assert_eq!(field(&json, "errors"), 0.0, "{json}");
        let iops = field(&json, "requests") / seconds;
        assert!((iops / field(&json, "iops") - 1.0).abs() < 1e-3, "{json}");
    }
}

#[test]
fn a_bad_runtime_or_both_limits_are_refused() {
    for args in [
        &["-t", "0"][..],
        &["--runtime=nan"],
        &["-t", "1", "-c", "5"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            err.contains("--runtime") || err.contains("cannot be used with"),
            "{args:?}: {err}"
        );
    }
}
