//! The invariants docs/ARCHITECTURE.md promises, checked on the source tree (as
//! rust-analyzer's tidy tests do): a promise the code breaks fails here, not in review.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The workspace's members (each folder with a Cargo.toml under `crates/`, plus xtask and
/// benches).
fn members() -> Vec<PathBuf> {
    let mut m: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    m.push(root().join("xtask"));
    m.push(root().join("benches"));
    m.sort();
    m
}

/// Code lines of a file: line comments and doc comments dropped (a comment may name a macro
/// or a keyword it explains).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Invariant 2: `unsafe` only under `crates/tensor/src/kernels/`, every block and impl with a
/// `// SAFETY:` comment in the lines just above it.
#[test]
fn unsafe_code_lives_in_the_kernels_and_says_why_it_is_sound() {
    let kernels = root().join("crates/tensor/src/kernels");
    let (mut bad, mut blocks) = (vec![], 0);
    for member in members() {
        for file in rust_files(&member) {
            if file.ends_with("tests/tidy.rs") {
                continue; // this file names the keyword in its checks
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (n, code) in code_lines(&text) {
                let has_unsafe = code
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "unsafe");
                if !has_unsafe || code.contains("unsafe_code") || code.contains("unsafe_op_in") {
                    continue;
                }
                if !file.starts_with(&kernels) {
                    bad.push(format!(
                        "{}:{n}: unsafe outside tensor::kernels",
                        rel(&file)
                    ));
                    continue;
                }
                // A block or impl needs its reason; `unsafe fn` declares a contract instead
                // (documented in `# Safety`, which clippy checks).
                let needs_reason = code.contains("unsafe {") || code.contains("unsafe impl");
                blocks += usize::from(needs_reason);
                let above = &lines[n.saturating_sub(8)..n - 1];
                if needs_reason
                    && !above.iter().any(|l| l.contains("SAFETY:"))
                    && !code.contains("SAFETY:")
                {
                    bad.push(format!(
                        "{}:{n}: unsafe without a // SAFETY: comment",
                        rel(&file)
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The scan sees the kernels' blocks (it is not vacuous).
    assert!(blocks > 20, "only {blocks} unsafe blocks found");
}

/// Every crate takes the workspace's lints (clippy's unsafe rules among them).
#[test]
fn every_crate_uses_the_workspace_lints() {
    for member in members() {
        let toml = std::fs::read_to_string(member.join("Cargo.toml")).unwrap();
        assert!(
            toml.contains("[lints]\nworkspace = true"),
            "{}: no `[lints] workspace = true`",
            rel(&member)
        );
    }
}

/// The dependencies a crate's Cargo.toml names in `[dependencies]` (not dev-dependencies).
fn dependencies(member: &str) -> Vec<String> {
    let toml = std::fs::read_to_string(root().join(member).join("Cargo.toml")).unwrap();
    let mut deps = vec![];
    let mut inside = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
        } else if inside && let Some((name, _)) = line.split_once('=') {
            deps.push(name.trim().to_string());
        }
    }
    deps
}

/// Invariants 1 and 11: the layers below `nn` know no files or serialisation; `signals`
/// knows no tensor.
#[test]
fn lower_layers_do_not_know_what_upper_layers_do() {
    for (member, forbidden) in [
        (
            "crates/tensor",
            &["serde", "bincode", "autograd", "nn", "image"][..],
        ),
        ("crates/autograd", &["serde", "bincode", "nn", "image"][..]),
        ("crates/signals", &["tensor", "autograd", "nn"][..]),
        ("crates/limits", &["tensor", "nn"][..]),
        // Invariant 14: the async stack and the database stay in the service.
        (
            "crates/nn",
            &["tokio", "axum", "tokio-postgres", "service"][..],
        ),
        (
            "crates/faces",
            &["tokio", "axum", "tokio-postgres", "service"][..],
        ),
        (
            "crates/style",
            &["tokio", "axum", "tokio-postgres", "service"][..],
        ),
    ] {
        let deps = dependencies(member);
        for f in forbidden {
            assert!(!deps.iter().any(|d| d == f), "{member} depends on {f}");
        }
    }
    assert_eq!(dependencies("crates/limits"), Vec::<String>::new());
    for member in ["crates/tensor", "crates/autograd"] {
        for file in rust_files(&root().join(member).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, code) in code_lines(&text) {
                assert!(
                    !code.contains("std::fs") && !code.contains("File::"),
                    "{}:{n}: file access below nn",
                    rel(&file)
                );
            }
        }
    }
}

/// Libraries return values and report through observers; only the command line prints.
#[test]
fn no_library_crate_prints() {
    let mut bad = vec![];
    for member in members() {
        // The programs: the `cnn` command line, the task runner, the benchmarks; and the
        // server, whose log is its standard error (written in one place, `error::log`).
        if member.ends_with("cli")
            || member.ends_with("xtask")
            || member.ends_with("benches")
            || member.ends_with("service")
        {
            continue;
        }
        for file in rust_files(&member.join("src")) {
            // Benchmark-style binaries of a library (src/bin) are programs, not library code.
            if file.components().any(|c| c.as_os_str() == "bin") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests inside a library may print what they measured.
            let library_part = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, code) in code_lines(library_part) {
                if ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("]
                    .iter()
                    .any(|m| code.contains(m))
                {
                    bad.push(format!("{}:{n}: {}", rel(&file), code.trim()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "library code prints:\n{}", bad.join("\n"));
}

/// The command modules of `cnn` import one another without a circle: the shared pieces sit in
/// `args` and `common`, and a module that dispatches or composes (`faces`, `demo`) is never
/// imported back by what it uses.
#[test]
fn cli_modules_import_each_other_without_a_circle() {
    let src = root().join("crates/cli/src");
    let mut edges: Vec<(String, Vec<String>)> = vec![];
    for file in rust_files(&src) {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut uses: Vec<String> = text
            .match_indices("crate::")
            .map(|(i, _)| {
                text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|m| !m.is_empty() && *m != name)
            .collect();
        uses.sort();
        uses.dedup();
        edges.push((name, uses));
    }
    assert!(edges.len() > 10, "only {} modules found", edges.len());
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &[(String, Vec<String>)],
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) {
        if done.iter().any(|d| d == m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_string());
        if let Some((_, uses)) = edges.iter().find(|(n, _)| n == m) {
            for u in uses {
                visit(u, edges, path, done);
            }
        }
        path.pop();
        done.push(m.to_string());
    }
    let mut done = vec![];
    for (m, _) in &edges {
        visit(m, &edges, &mut vec![], &mut done);
    }
    // `common` and `args` are leaves: what every command shares depends on no command.
    for leaf in ["common", "args"] {
        let (_, uses) = edges.iter().find(|(n, _)| n == leaf).unwrap();
        assert!(uses.iter().all(|u| u == "args"), "{leaf} imports {uses:?}");
    }
}
