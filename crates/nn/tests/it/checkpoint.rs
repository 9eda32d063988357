//! Checkpoints: bit-exact round trip, and every kind of damage rejected with its own message.

use nn::checkpoint::{self, Checkpoint};
use nn::optim::{Adam, Optimizer};
use nn::{Error, ParamKind, ParamStore};
use tensor::Tensor;

fn store() -> ParamStore {
    let mut s = ParamStore::new();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    s.add(
        "a.weight",
        Tensor::randn(&[3, 4], 0.0, 1.0, &mut rng),
        ParamKind::Weight,
    )
    .unwrap();
    s.add(
        "a.bias",
        Tensor::from_vec(vec![f32::MIN_POSITIVE / 3.0, -0.0, 1e30], &[3]).unwrap(),
        ParamKind::Weight,
    )
    .unwrap();
    s.add("bn.running_mean", Tensor::ones(&[3]), ParamKind::Buffer)
        .unwrap();
    s
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nn-ckpt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn round_trip_is_bit_exact() {
    let s = store();
    let opt = Adam::new(0.1);
    let mut ck = Checkpoint::from_store(&s, "{\"model\":\"test\"}", 42, Some(opt.state(&s)));
    ck.metadata.push(("epoch".into(), "3".into()));
    let path = tmp("round.ckpt");
    checkpoint::save(&path, &ck).unwrap();
    let back = checkpoint::load(&path).unwrap();
    assert_eq!(back, ck);
    let mut fresh = ParamStore::new();
    for id in s.ids() {
        fresh
            .add(s.name(id), Tensor::zeros(s.get(id).shape()), s.kind(id))
            .unwrap();
    }
    back.apply_to(&mut fresh).unwrap();
    for id in s.ids() {
        let (x, y) = (s.get(id).to_vec(), fresh.get(id).to_vec());
        assert!(
            x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{} differs",
            s.name(id)
        );
    }
    assert_eq!(back.meta("epoch"), Some("3"));
}

#[test]
fn damage_is_rejected_clearly() {
    let s = store();
    let path = tmp("damaged.ckpt");
    checkpoint::save(&path, &Checkpoint::from_store(&s, "", 0, None)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let expect = |data: &[u8], needle: &str| {
        let p = tmp("case.ckpt");
        std::fs::write(&p, data).unwrap();
        match checkpoint::load(&p) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("expected Corrupt({needle}), got {other:?}"),
        }
    };
    expect(&bytes[..bytes.len() / 2], "truncated");
    expect(&bytes[..10], "truncated");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x40;
    expect(&flipped, "checksum");
    let mut magic = bytes.clone();
    magic[0] = b'X';
    expect(&magic, "magic");
    let mut version = bytes.clone();
    version[8] = 9;
    expect(&version, "version 9");
    assert!(matches!(
        checkpoint::load(&tmp("missing.ckpt")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn names_and_shapes_are_checked_and_nothing_is_written_on_mismatch() {
    let s = store();
    let ck = Checkpoint::from_store(&s, "", 0, None);
    let mut other = ParamStore::new();
    other
        .add("a.weight", Tensor::zeros(&[4, 3]), ParamKind::Weight)
        .unwrap();
    assert!(matches!(
        ck.apply_to(&mut other),
        Err(Error::ParamShape { .. })
    ));
    assert_eq!(
        other.get(other.id("a.weight").unwrap()).to_vec(),
        vec![0.0; 12]
    );
    let mut missing = ParamStore::new();
    missing
        .add("c.weight", Tensor::zeros(&[1]), ParamKind::Weight)
        .unwrap();
    assert!(matches!(
        ck.apply_to(&mut missing),
        Err(Error::MissingParam { .. })
    ));
}

#[test]
fn a_failed_save_leaves_the_previous_file_intact() {
    let s = store();
    let path = tmp("keep.ckpt");
    let first = Checkpoint::from_store(&s, "first", 1, None);
    checkpoint::save(&path, &first).unwrap();
    // Saving into a folder that does not exist fails before touching `path`'s folder...
    let bad = tmp("no-such-dir").join("x.ckpt");
    assert!(matches!(
        checkpoint::save(&bad, &first),
        Err(Error::Io { .. })
    ));
    // ...and no temporary file is left next to the good one.
    let dir = path.parent().unwrap();
    assert!(
        std::fs::read_dir(dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp-"))
    );
    assert_eq!(checkpoint::load(&path).unwrap().config, "first");
}

/// A container with a valid header and checksum around `payload`.
fn container(payload: &[u8]) -> Vec<u8> {
    let mut bytes = checkpoint::MAGIC.to_vec();
    bytes.extend(checkpoint::FORMAT_VERSION.to_le_bytes());
    bytes.extend((payload.len() as u64).to_le_bytes());
    bytes.extend(crc32fast::hash(payload).to_le_bytes());
    bytes.extend(payload);
    bytes
}

#[test]
fn lengths_inside_a_valid_payload_cannot_claim_more_memory_than_the_file_holds() {
    // The first field, the config string, claims 2^61 bytes (bincode's varint: 0xFD + u64).
    for claimed in [1u64 << 61, 1 << 33, 1 << 24] {
        let mut payload = vec![0xFD];
        payload.extend(claimed.to_le_bytes());
        payload.extend([b'x'; 32]);
        let p = tmp(&format!("claims-{claimed}.ckpt"));
        std::fs::write(&p, container(&payload)).unwrap();
        match checkpoint::load(&p) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("decode"), "{reason}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn a_symlinked_file_is_written_through_and_left_temporaries_are_removed() {
    let s = store();
    let dir = tmp("links");
    std::fs::create_dir_all(&dir).unwrap();
    let real = dir.join("real.ckpt");
    let link = dir.join("link.ckpt");
    let _ = std::fs::remove_file(&link);
    checkpoint::save(&real, &Checkpoint::from_store(&s, "old", 0, None)).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("real.ckpt", &link).unwrap();
        checkpoint::save(&link, &Checkpoint::from_store(&s, "new", 0, None)).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "the link stays a link"
        );
        assert_eq!(checkpoint::load(&real).unwrap().config, "new");
    }
    // A temporary file of a writer that was killed (a pid that cannot exist) goes at the next
    // save; one of a live writer (this process's own name pattern, another file) stays.
    let dead = dir.join(".real.ckpt.tmp-4194305");
    let other = dir.join(".other.ckpt.tmp-4194305");
    std::fs::write(&dead, b"partial").unwrap();
    std::fs::write(&other, b"partial").unwrap();
    checkpoint::save(&real, &Checkpoint::from_store(&s, "newer", 0, None)).unwrap();
    if std::path::Path::new("/proc/self").exists() {
        assert!(
            !dead.exists(),
            "the dead writer's temporary file is removed"
        );
    }
    assert!(
        other.exists(),
        "another file's temporaries are not ours to remove"
    );
}
