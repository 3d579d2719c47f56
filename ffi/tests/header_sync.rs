//! Keeps `include/corral.h` in step with the Rust exports: every
//! `#[no_mangle]` function under `src/` is declared in the header and every
//! function the header declares is exported. (`make -C ffi check` also
//! compiles the header as C11 and C++ and checks the shared library's symbols.)

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Names of the `#[no_mangle]` functions in one Rust source.
fn exported_names(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut armed = false;
    for line in source.lines().map(str::trim) {
        if line == "#[no_mangle]" || line == "#[unsafe(no_mangle)]" {
            armed = true;
            continue;
        }
        if armed && !line.starts_with("#[") {
            let after_fn = line
                .split_once(" fn ")
                .unwrap_or_else(|| panic!("#[no_mangle] not on a function: {line}"))
                .1;
            let name = after_fn.split('(').next().expect("fn name").trim();
            assert!(line.contains("extern \"C\""), "{name} is not extern \"C\"");
            names.push(name.to_string());
            armed = false;
        }
    }
    names
}

/// Names of the functions the header declares (prototype lines, not comments).
fn declared_names(header: &str) -> BTreeSet<String> {
    header
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("/*") && !line.starts_with('*') && !line.starts_with("//"))
        .filter(|line| !line.starts_with("typedef"))
        .filter_map(|line| {
            let open = line.find('(')?;
            let before = &line[..open];
            let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))? + 1;
            let name = &before[start..];
            name.starts_with("corral_").then(|| name.to_string())
        })
        .collect()
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    rust_sources(&root.join("src"), &mut sources);
    let mut exported = BTreeSet::new();
    for path in &sources {
        let text = fs::read_to_string(path).expect("read source");
        for name in exported_names(&text) {
            assert!(exported.insert(name.clone()), "{name} exported twice");
        }
    }
    let header = fs::read_to_string(root.join("include/corral.h")).expect("read corral.h");
    let declared = declared_names(&header);

    assert!(
        exported.len() >= 10,
        "found only {exported:?}: is the scanner broken?"
    );
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    let unexported: Vec<_> = declared.difference(&exported).collect();
    assert!(
        undeclared.is_empty(),
        "exported but missing from corral.h: {undeclared:?}"
    );
    assert!(
        unexported.is_empty(),
        "declared in corral.h but not exported: {unexported:?}"
    );
}

#[test]
fn header_has_guards_for_cplusplus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = fs::read_to_string(root.join("include/corral.h")).expect("read corral.h");
    assert!(header.contains("#ifdef __cplusplus\nextern \"C\" {\n#endif"));
    assert!(header.contains("#ifndef CORRAL_H\n#define CORRAL_H"));
}
