//! Every seed input and every committed crash input of every fuzz target, run through the
//! target's body: a reader that panics on one of them fails this test (an abort ends it).
//! The inputs live in `fuzz/seeds/NAME/` and `fuzz/regressions/NAME/`.

#![allow(clippy::print_stderr)]

use std::path::Path;

#[test]
fn every_seed_and_regression_input_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut total = 0;
    for (name, target) in fuzzing::TARGETS {
        let mut inputs = 0;
        for kind in ["seeds", "regressions"] {
            let dir = root.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let bytes = std::fs::read(e.path()).unwrap();
                target(&bytes);
                inputs += 1;
            }
        }
        assert!(
            inputs > 0,
            "fuzz target {name} has no seed input in fuzz/seeds/{name}"
        );
        total += inputs;
    }
    eprintln!("{total} inputs replayed");
}

#[test]
fn every_target_has_a_libfuzzer_wrapper() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in fuzzing::TARGETS {
        let file = dir.join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            text.contains(&format!("fuzzing::{name}(")),
            "{} should call fuzzing::{name}",
            file.display()
        );
    }
}

/// Writes the seeds in the project's own formats (a small face model's checkpoint, its spec,
/// a gallery) into `fuzz/seeds/`. Run by hand: `cargo test -p fuzzing -- --ignored`.
#[test]
#[ignore = "writes seed files; run by hand when the formats change"]
fn write_own_format_seeds() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let dir = std::env::temp_dir().join(format!("fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = faces::model::FaceModel::new(fuzzing::small_model_spec(), 1, 0.0).unwrap();
    let put = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(seeds.join(target)).unwrap();
        std::fs::write(seeds.join(target).join(name), bytes).unwrap();
    };
    let path = dir.join("m.model");
    model.save(&path).unwrap();
    // Whole files, and their payloads alone (the targets also wrap the input in a valid
    // header, so mutations reach the decoder behind the checksum).
    let model_bytes = std::fs::read(&path).unwrap();
    put("checkpoint", "small.model", &model_bytes);
    put("checkpoint", "small.model.payload", &model_bytes[24..]);
    put("model_spec", "small.json", model.spec_json().as_bytes());
    let mut g = faces::gallery::Gallery::new("0123abcd".into(), "fuzz seed".into(), 4, 0.5);
    for (p, name) in ["alice", "bob"].iter().enumerate() {
        let files = vec![(format!("{name}/1.jpg"), format!("hash{p}"))];
        let enc = vec![faces::gallery::Enrolled {
            source: files[0].0.clone(),
            content_hash: files[0].1.clone(),
            encoding: vec![0.5, -0.5, p as f32, 0.0],
        }];
        g.enroll(name, &files, enc).unwrap();
    }
    let gpath = dir.join("g.gallery");
    g.save(&gpath).unwrap();
    let gallery_bytes = std::fs::read(&gpath).unwrap();
    put("gallery", "two_people.gallery", &gallery_bytes);
    put("gallery", "two_people.payload", &gallery_bytes[24..]);
    std::fs::remove_dir_all(&dir).ok();
}

/// The fuzzer starts from specs that load: the `model_spec` seeds fit the harness's weights.
#[test]
fn the_model_spec_seeds_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/model_spec");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let mut ck = fuzzing::small_model_checkpoint().clone();
        ck.config = std::fs::read_to_string(e.path()).unwrap();
        if let Err(err) = faces::model::FaceModel::from_checkpoint(&ck, &e.path()) {
            panic!("{}: {err}", e.path().display());
        }
    }
}
