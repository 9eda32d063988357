//! The gallery file and search: round trip, damage and foreign models refused with named
//! errors, re-enrolment that encodes only what changed, a writer killed mid-save, the lock,
//! and exact search against brute force in f32 and f16.

use std::path::{Path, PathBuf};

use faces::gallery::{Enrolled, Gallery, GalleryError, GalleryLock, Index, Precision};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gallery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn encoding(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A gallery of `people` people with `per` images each.
fn sample(people: usize, per: usize, dim: usize, seed: u64) -> Gallery {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut g = Gallery::new("model-a".into(), "test model".into(), dim, 0.5);
    for p in 0..people {
        let files: Vec<(String, String)> = (0..per)
            .map(|i| (format!("p{p}/{i}.jpg"), format!("hash{p}-{i}")))
            .collect();
        let enc = files
            .iter()
            .map(|(s, h)| Enrolled {
                source: s.clone(),
                content_hash: h.clone(),
                encoding: encoding(&mut rng, dim),
            })
            .collect();
        g.enroll(&format!("person{p}"), &files, enc).unwrap();
    }
    g
}

#[test]
fn round_trip_and_damage_is_named() {
    let dir = tempdir("damage");
    let path = dir.join("g.gallery");
    let g = sample(5, 2, 8, 0);
    g.save(&path).unwrap();
    assert_eq!(Gallery::load(&path).unwrap(), g);

    let bytes = std::fs::read(&path).unwrap();
    let mut flipped = bytes.clone();
    let at = bytes.len() - 7;
    flipped[at] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    let e = Gallery::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("checksum mismatch") && e.contains("g.gallery"),
        "{e}"
    );

    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = Gallery::load(&path).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");

    let mut pickle = b"\x80\x04\x95".to_vec();
    pickle.resize(64, b'.');
    std::fs::write(&path, &pickle).unwrap();
    let e = Gallery::load(&path).unwrap_err().to_string();
    assert!(e.contains("not a gallery"), "{e}");
}

#[test]
fn another_model_is_refused_naming_both_fingerprints() {
    let g = sample(2, 1, 4, 1);
    let e = g
        .check_model("model-b", "model B", Path::new("people.gallery"))
        .unwrap_err();
    assert!(matches!(e, GalleryError::ModelMismatch { .. }));
    let m = e.to_string();
    assert!(m.contains("model-a") && m.contains("model-b") && m.contains("people.gallery"));
    assert!(m.contains("model B"), "the model in use is described: {m}");
    g.check_model("model-a", "model A", Path::new("x")).unwrap();
}

#[test]
fn re_enrolling_encodes_only_changed_images_and_drops_removed_ones() {
    let mut g = sample(3, 3, 4, 2);
    let files: Vec<(String, String)> = (0..3)
        .map(|i| (format!("p1/{i}.jpg"), format!("hash1-{i}")))
        .collect();
    assert!(g.needs_encoding("person1", &files).is_empty());
    // One file changed, one gone, one new.
    let changed = vec![
        ("p1/0.jpg".to_string(), "hash1-0".to_string()),
        ("p1/1.jpg".to_string(), "edited".to_string()),
        ("p1/3.jpg".to_string(), "new".to_string()),
    ];
    let need = g.needs_encoding("person1", &changed);
    assert_eq!(need, vec!["p1/1.jpg", "p1/3.jpg"]);
    let enc = need
        .iter()
        .zip(["edited", "new"])
        .map(|(s, h)| Enrolled {
            source: s.to_string(),
            content_hash: h.into(),
            encoding: vec![0.0; 4],
        })
        .collect();
    assert_eq!(g.enroll("person1", &changed, enc).unwrap(), (2, 1, 1));
    assert_eq!(g.identities[1].images.len(), 3);
    assert!(g.needs_encoding("person1", &changed).is_empty());
    // A new person needs everything.
    assert_eq!(g.needs_encoding("stranger", &changed).len(), 3);
}

#[test]
fn remove_and_rename_check_names() {
    let mut g = sample(3, 1, 4, 3);
    let e = g.remove("nobody").unwrap_err().to_string();
    assert!(e.contains("\"nobody\"") && e.contains("person0"), "{e}");
    g.rename("person0", "Ada").unwrap();
    assert!(matches!(
        g.rename("person1", "Ada"),
        Err(GalleryError::DuplicateIdentity { .. })
    ));
    assert_eq!(g.remove("Ada").unwrap().name, "Ada");
    assert_eq!(g.identities.len(), 2);
}

#[test]
fn the_lock_keeps_a_second_writer_out_until_released() {
    let dir = tempdir("lock");
    let path = dir.join("g.gallery");
    let lock = GalleryLock::acquire(&path).unwrap();
    let e = GalleryLock::acquire(&path).err().unwrap();
    assert!(matches!(e, GalleryError::Locked { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("pid {}", std::process::id()))
    );
    drop(lock);
    let again = GalleryLock::acquire(&path).unwrap();
    drop(again);
    // A lock file left by a process that is gone (killed mid-write) holds no OS lock: it is
    // taken over, whatever it says.
    let lock_file = dir.join("g.gallery.lock");
    for left in ["pid 4194305\n", "held by someone\n", ""] {
        std::fs::write(&lock_file, left).unwrap();
        let taken = GalleryLock::acquire(&path).unwrap();
        assert!(
            std::fs::read_to_string(&lock_file)
                .unwrap()
                .contains(&std::process::id().to_string())
        );
        drop(taken);
        assert!(!lock_file.exists(), "removed when released");
    }
}

/// Many threads take over a left lock file at once, round after round: never two holders.
#[test]
fn a_left_lock_taken_over_by_many_writers_at_once_has_one_winner() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    let dir = tempdir("lock-race");
    let path = dir.join("g.gallery");
    let lock_file = dir.join("g.gallery.lock");
    let (threads, rounds) = (8, 300);
    let holders = Arc::new(AtomicUsize::new(0));
    let (mut wins, mut overlaps) = (0usize, 0usize);
    for _ in 0..rounds {
        std::fs::write(&lock_file, "pid 4194305\n").unwrap();
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, holders, path) = (barrier.clone(), holders.clone(), path.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    match GalleryLock::acquire(&path) {
                        Ok(lock) => {
                            let before = holders.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            holders.fetch_sub(1, Ordering::SeqCst);
                            drop(lock);
                            (1, usize::from(before > 0))
                        }
                        Err(GalleryError::Locked { .. }) => (0, 0),
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        for h in handles {
            let (w, o) = h.join().unwrap();
            wins += w;
            overlaps += o;
        }
    }
    assert_eq!(overlaps, 0, "two writers held the lock at once");
    assert!(
        wins >= rounds,
        "every round has a winner: {wins} wins in {rounds} rounds"
    );
}

const CHILD_ENV: &str = "FACES_GALLERY_KILL_CHILD";

/// The child process of `a_writer_killed_mid_save_leaves_a_loadable_gallery`: saves
/// galleries to the path in `CHILD_ENV` until killed. Ignored in ordinary runs.
#[test]
#[ignore = "the child process of a_writer_killed_mid_save_leaves_a_loadable_gallery"]
fn child_writer_saves_until_killed() {
    let path = std::env::var_os(CHILD_ENV).expect("run only as the child, with CHILD_ENV set");
    let path = PathBuf::from(path);
    for round in 0u64.. {
        sample(2000, 2, 128, round).save(&path).unwrap();
    }
}

#[test]
fn a_writer_killed_mid_save_leaves_a_loadable_gallery() {
    let dir = tempdir("kill");
    let path = dir.join("g.gallery");
    let before = sample(4, 1, 128, 99);
    before.save(&path).unwrap();
    let mut rewritten = 0;
    // The child test's name as the harness knows it: its module path without the crate.
    let child_test = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::child_writer_saves_until_killed"),
        None => "child_writer_saves_until_killed".to_string(),
    };
    for delay_ms in [30u64, 90, 170, 260] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &child_test, "--ignored", "--nocapture"])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // Either the old gallery or one complete new one, never a torn file.
        let g = Gallery::load(&path).unwrap();
        assert!(g == before || g.identities.len() == 2000);
        rewritten += usize::from(g.identities.len() == 2000);
    }
    // The child did write (otherwise the test would prove nothing).
    assert!(rewritten > 0, "the child process never completed a save");
}

#[test]
fn search_equals_brute_force_in_f32_and_nearly_in_f16() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (rows, dim, k) in [(1usize, 3usize, 1usize), (50, 16, 3), (9000, 128, 5)] {
        let owners: Vec<u32> = (0..rows).map(|r| (r % 37) as u32).collect();
        let data: Vec<f32> = (0..rows * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let probe: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        // Brute force in f64: each owner's nearest row.
        let mut best: std::collections::BTreeMap<u32, f64> = Default::default();
        for r in 0..rows {
            let d: f64 = (0..dim)
                .map(|i| (f64::from(probe[i]) - f64::from(data[r * dim + i])).powi(2))
                .sum();
            let e = best.entry(owners[r]).or_insert(f64::INFINITY);
            *e = e.min(d);
        }
        let mut want: Vec<(u32, f64)> = best.into_iter().collect();
        want.sort_by(|a, b| a.1.total_cmp(&b.1));
        want.truncate(k);
        for precision in [Precision::F32, Precision::F16] {
            let idx = Index::new(data.clone(), owners.clone(), dim, precision);
            let got = idx.search(&probe, k).unwrap();
            assert_eq!(got.len(), want.len());
            let tol = if precision == Precision::F32 {
                1e-4
            } else {
                2e-2
            };
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (f64::from(g.1) - w.1).abs() <= tol * (1.0 + w.1),
                    "{precision:?}: {g:?} vs {w:?}"
                );
            }
            if precision == Precision::F32 {
                assert_eq!(
                    got.iter().map(|g| g.0).collect::<Vec<_>>(),
                    want.iter().map(|w| w.0).collect::<Vec<_>>()
                );
            }
        }
    }
    // A batch search gives each probe its own search's answer (the same people; distances
    // summed in another order).
    let (rows, dim) = (3000usize, 16usize);
    let owners: Vec<u32> = (0..rows).map(|r| (r % 101) as u32).collect();
    let data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let probes: Vec<f32> = (0..7 * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    for precision in [Precision::F32, Precision::F16] {
        let idx = Index::new(data.clone(), owners.clone(), dim, precision);
        let batch = idx.search_batch(&probes, 4).unwrap();
        for (q, got) in batch.iter().enumerate() {
            let want = idx.search(&probes[q * dim..(q + 1) * dim], 4).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0);
                assert!((g.1 - w.1).abs() <= 1e-5 * (1.0 + w.1), "{g:?} vs {w:?}");
            }
        }
    }
    let idx = Index::new(vec![0.0; 8], vec![0, 1], 4, Precision::F32);
    assert!(matches!(
        idx.search(&[0.0; 3], 1),
        Err(GalleryError::Dim {
            expected: 4,
            got: 3
        })
    ));
}

#[test]
fn decisions_use_tau_per_identity_and_report_the_margin() {
    let mut g = sample(3, 1, 2, 5);
    g.identities[0].images[0].encoding = vec![0.0, 0.0];
    g.identities[1].images[0].encoding = vec![1.0, 0.0];
    g.identities[2].images[0].encoding = vec![5.0, 5.0];
    let idx = g.index(Precision::F32);
    let d = g.decide(&idx.search(&[0.1, 0.0], 2).unwrap());
    assert_eq!(d.identity.as_deref(), Some("person0"));
    assert!((d.distance - 0.01).abs() < 1e-6);
    assert!((d.margin - (0.81 - 0.01)).abs() < 1e-5);
    assert_eq!(d.top.len(), 2);
    // Beyond tau: unknown.
    let d = g.decide(&idx.search(&[0.5, 0.9], 2).unwrap());
    assert_eq!(d.identity, None);
    // A person's own, looser tau.
    g.set_identity_tau("person0", Some(2.0)).unwrap();
    let d = g.decide(&idx.search(&[0.5, 0.9], 2).unwrap());
    assert_eq!(d.identity.as_deref(), Some("person0"));
}

#[test]
fn a_gallery_with_impossible_fields_is_refused_at_load() {
    let dir = tempdir("impossible");
    let path = dir.join("g.gallery");
    let refused = |g: &Gallery, needle: &str| {
        g.save(&path).unwrap();
        let Err(e) = Gallery::load(&path) else {
            panic!("loaded a gallery with {needle}")
        };
        let e = e.to_string();
        assert!(e.contains("g.gallery") && e.contains(needle), "{e}");
    };
    let mut g = sample(2, 1, 4, 0);
    g.model = "mödel-é".into();
    refused(&g, "fingerprint");
    let mut g = sample(2, 1, 4, 0);
    g.tau = f32::NAN;
    refused(&g, "tau NaN");
    let mut g = sample(2, 1, 4, 0);
    g.identities[1].name = "line\nbreak".into();
    refused(&g, "cannot name a person");
    // An empty gallery claiming encodings of 700 M values (found by fuzzing: a search then
    // allocated a probe of that size).
    let mut g = sample(0, 0, 4, 0);
    g.dim = 700_000_000;
    refused(&g, "encodings of size 700000000: a size is 1..=65536");
    let mut g = sample(2, 1, 4, 0);
    assert!(g.set_identity_tau("person0", Some(-1.0)).is_err());
    assert!(g.rename("person0", "  ").is_err());
    assert!(g.rename("person0", "Zoë Ünal").is_ok());
}
