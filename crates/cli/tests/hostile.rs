//! Hostile and clumsy input to the commands (issue 17's list): each gets a clear error naming
//! the problem, or is handled, and none panics (exit code 101) or aborts.

#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};

use common::{cnn, text};

/// A refused command: exit code 1 or 2 (clap), not a panic (101) or a signal, and a message
/// containing every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let o = cnn(args);
    let t = text(&o);
    assert!(
        matches!(o.status.code(), Some(1 | 2)),
        "{args:?}: exit {:?}\n{t}",
        o.status.code()
    );
    assert!(!t.contains("panicked"), "{args:?}: {t}");
    for n in needles {
        assert!(t.contains(n), "{args:?}: no {n:?} in\n{t}");
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn orl(s: usize, i: usize) -> String {
    root()
        .join(format!("crates/faces/assets/orl/s{s}/{i}.pgm"))
        .to_string_lossy()
        .into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    common::tempdir("hostile", name)
}

#[test]
fn an_empty_image_is_skipped_in_a_batch_and_named_in_verify() {
    let dir = tempdir("empty-image");
    let zero = dir.join("zero.pgm");
    std::fs::write(&zero, b"P5 0 0 255\n").unwrap();
    let z = zero.to_str().unwrap();
    let gallery = dir.join("g.gallery");
    let g = gallery.to_str().unwrap();
    let people = dir.join("people");
    for (name, s) in [("alice", 1), ("bob", 2)] {
        std::fs::create_dir_all(people.join(name)).unwrap();
        std::fs::copy(orl(s, 1), people.join(name).join("1.pgm")).unwrap();
    }
    let o = cnn(&[
        "faces",
        "enroll",
        "--crop",
        "none",
        "--gallery",
        g,
        "--people",
        people.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // One bad file does not end the batch: the good probe is still identified.
    let o = cnn(&[
        "faces",
        "identify",
        "--crop",
        "none",
        "--gallery",
        g,
        z,
        &orl(1, 2),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("zero.pgm") && t.contains("empty"), "{t}");
    assert!(t.contains("alice"), "{t}");
    refused(
        &["faces", "verify", "--crop", "none", z, &orl(1, 2)],
        &["zero.pgm", "0 x 0"],
    );
    refused(
        &[
            "faces",
            "verify",
            "--crop",
            "4294967295,0,1,1",
            &orl(1, 1),
            &orl(1, 2),
        ],
        &["crop box", "does not fit"],
    );
    refused(
        &[
            "faces",
            "identify",
            "--gallery",
            g,
            "--top-k",
            "100000000000",
            z,
        ],
        &["--top-k"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn names_rates_and_sizes_outside_their_range_are_refused_with_the_range() {
    let dir = tempdir("ranges");
    let people = dir.join("people");
    std::fs::create_dir_all(people.join(" ")).unwrap();
    std::fs::copy(orl(3, 1), people.join(" ").join("1.pgm")).unwrap();
    let gallery = dir.join("g.gallery");
    refused(
        &[
            "faces",
            "enroll",
            "--crop",
            "none",
            "--gallery",
            gallery.to_str().unwrap(),
            "--people",
            people.to_str().unwrap(),
        ],
        &["cannot name a person"],
    );
    assert!(!gallery.exists(), "nothing written");
    for far in ["nan", "-1", "2"] {
        refused(
            &[
                "faces",
                "calibrate",
                "--gallery",
                gallery.to_str().unwrap(),
                "--people",
                people.to_str().unwrap(),
                "--target-far",
                far,
            ],
            &["--target-far", "[0, 1]"],
        );
    }
    for lr in ["1e6", "-0.1", "0", "nan"] {
        refused(
            &[
                "faces", "train", "--data", "x", "--out", "m.model", "--lr", lr,
            ],
            &["--lr", "(0, 1]"],
        );
    }
    // Sizes that become allocations: a model or a batch beyond the limit is refused.
    let orl_dir = root().join("crates/faces/assets/orl");
    let model_out = dir.join("m.model");
    let faces_train = |flag: &str, needle: &str| {
        refused(
            &[
                "faces",
                "train",
                "--data",
                orl_dir.to_str().unwrap(),
                "--out",
                model_out.to_str().unwrap(),
                "--epochs",
                "1",
                flag,
                "99999999999",
            ],
            &[needle],
        )
    };
    faces_train("--dim", "does not fit");
    faces_train("--images-per-person", "--images-per-person");
    refused(
        &[
            "train",
            "classifier",
            "--data",
            "x",
            "--out",
            dir.to_str().unwrap(),
            "--size",
            "0x0",
        ],
        &["--size", "1..=4096"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn style_sizes_get_advice_and_no_allocation_beyond_the_limit() {
    let dir = tempdir("style");
    let assets = root().join("crates/style/assets");
    let content = assets.join("shipwreck.jpg");
    let style = assets.join("wave.jpg");
    let out = dir.join("o.png");
    let args = |size: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "style",
            "--content",
            content.to_str().unwrap(),
            "--style",
            style.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--size",
            size,
            "--iters",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |v: &[String]| cnn(&v.iter().map(String::as_str).collect::<Vec<_>>());
    for size in ["0", "100000"] {
        let v = args(size, &[]);
        refused(
            &v.iter().map(String::as_str).collect::<Vec<_>>(),
            &["--size", "1..=8192"],
        );
    }
    // A landscape photo at a small size: the short side is what the network needs.
    let v = args("24", &[]);
    refused(
        &v.iter().map(String::as_str).collect::<Vec<_>>(),
        &["pixels on each side", "use --size"],
    );
    let o = run(&args("64", &[]));
    assert!(o.status.success(), "{}", text(&o));
    // The estimate refuses a large run before allocating it (a few seconds, not minutes).
    let t0 = std::time::Instant::now();
    let v = args("4096", &["--memory-limit-mb", "200"]);
    refused(
        &v.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--memory-limit-mb 200"],
    );
    assert!(t0.elapsed().as_secs() < 60, "{:?}", t0.elapsed());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn output_paths_are_checked_before_any_work() {
    let dir = tempdir("outputs");
    // A folder that does not exist yet is created...
    let out = dir.join("new/deeper/explain.png");
    let o = cnn(&[
        "faces",
        "explain",
        "--crop",
        "none",
        &orl(1, 1),
        &orl(1, 2),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.exists());
    // ...and one that cannot be is refused at once, naming the flag.
    let t0 = std::time::Instant::now();
    refused(
        &[
            "oneshot",
            "train",
            "--omniglot",
            "/nonexistent",
            "--out",
            "/dev/null/m.ckpt",
        ],
        &["--out", "/dev/null"],
    );
    refused(
        &[
            "faces",
            "train",
            "--data",
            "/nonexistent",
            "--out",
            "/dev/null/m.model",
        ],
        &["--out", "/dev/null"],
    );
    assert!(t0.elapsed().as_secs() < 10);
    // An output folder inside the data folder would be read back as a class.
    let data = dir.join("classes");
    for class in ["a", "b"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
    }
    let inside = data.join("out");
    refused(
        &[
            "train",
            "classifier",
            "--data",
            data.to_str().unwrap(),
            "--out",
            inside.to_str().unwrap(),
        ],
        &["lies inside --data", "choose a folder outside it"],
    );
    assert!(!inside.exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// A tensor too large for the process's memory is an error naming its size, not an abort
/// (under an address-space limit, as `ulimit -v` or a container sets it).
#[test]
fn a_tensor_beyond_the_memory_limit_is_an_error() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no prlimit (util-linux) on this machine");
        return;
    }
    let dir = tempdir("oom");
    let out = dir.join("m.model");
    let orl_dir = root().join("crates/faces/assets/orl");
    let o = std::process::Command::new("prlimit")
        .arg("--as=4294967296")
        .arg(env!("CARGO_BIN_EXE_cnn"))
        .args(["faces", "train", "--data"])
        .arg(&orl_dir)
        .args([
            "--train-people",
            "10",
            "--size",
            "1024x1024",
            "--epochs",
            "1",
            "--out",
        ])
        .arg(&out)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("out of memory") && t.contains("MiB"), "{t}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_gallery_gets_the_command_that_makes_it() {
    let dir = tempdir("missing_gallery");
    let g = dir.join("none.gallery");
    let g = g.to_str().unwrap();
    let make =
        format!("no gallery at {g}: make one with `faces enroll --gallery {g} --people DIR`");
    refused(&["faces", "identify", "--gallery", g, &orl(1, 1)], &[&make]);
    refused(&["faces", "gallery", "list", "--gallery", g], &[&make]);
    refused(
        &["faces", "gallery", "remove", "--gallery", g, "s1"],
        &[&make],
    );
    // Nothing is created on the way (no lock file either).
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn a_broken_file_in_a_folder_is_skipped_and_named_once() {
    let dir = tempdir("broken-in-folder");
    let bob = dir.join("people/bob");
    std::fs::create_dir_all(&bob).unwrap();
    std::fs::copy(orl(2, 1), bob.join("1.pgm")).unwrap();
    let jpg = std::fs::read(root().join("crates/style/assets/shipwreck.jpg")).unwrap();
    let broken = bob.join("broken.jpg");
    std::fs::write(&broken, &jpg[..300]).unwrap();
    let g = dir.join("g.gallery");
    let o = cnn(&[
        "faces",
        "enroll",
        "--crop",
        "none",
        "--gallery",
        g.to_str().unwrap(),
        "--people",
        dir.join("people").to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find(|l| l.contains("skipped") && l.contains("broken.jpg"))
        .unwrap_or_else(|| panic!("no skipped line for broken.jpg in\n{t}"));
    assert_eq!(line.matches("broken.jpg").count(), 1, "{line}");
    assert!(line.contains("not a readable image"), "{line}");
}

#[test]
fn folds_are_refused_where_the_protocol_has_no_folds() {
    let o = cnn(&[
        "faces",
        "eval",
        "--pairs-dir",
        "/nonexistent",
        "--folds",
        "3",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--folds is for --lfw"), "{}", text(&o));
    let o = cnn(&["faces", "eval", "--lfw", "/nonexistent", "--folds", "11"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("2..=10"), "{}", text(&o));
}
