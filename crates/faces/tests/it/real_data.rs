//! Data-backed tests on the real LFW and Omniglot releases. They read the data's location from
//! `CNN_LFW_DIR` / `CNN_OMNIGLOT_DIR`, print that they are skipped when the variable is unset,
//! and fail when it is set but the data is missing or wrong.

#![allow(clippy::print_stderr)]

use std::path::PathBuf;

use faces::data::{
    Identities, Preprocess, check_pair_images, load_omniglot_npz, load_oneshot_runs, parse_pairs,
    parse_people, read_protocol,
};

fn data_dir(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(v) => Some(PathBuf::from(v)),
        None => {
            eprintln!("skipped: set {var} to run this test on the real data");
            None
        }
    }
}

#[test]
fn lfw_protocol_files_parse_with_the_official_counts() {
    let Some(root) = data_dir("CNN_LFW_DIR") else {
        return;
    };
    let protocol = root.join("protocol");
    let images = root.join("lfw-deepfunneled");
    let pairs = read_protocol(&protocol.join("pairs.txt"), parse_pairs).unwrap();
    assert_eq!(pairs.len(), 6000);
    for f in 0..10 {
        let fold: Vec<_> = pairs.iter().filter(|p| p.fold == f).collect();
        assert_eq!(fold.len(), 600);
        assert_eq!(fold.iter().filter(|p| p.same).count(), 300);
    }
    check_pair_images(&images, &pairs, &protocol.join("pairs.txt")).unwrap();
    for (file, n) in [("pairsDevTrain.txt", 2200), ("pairsDevTest.txt", 1000)] {
        let p = read_protocol(&protocol.join(file), parse_pairs).unwrap();
        assert_eq!(p.len(), n, "{file}");
        check_pair_images(&images, &p, &protocol.join(file)).unwrap();
    }
    for (file, people, imgs) in [
        ("people.txt", 5749, 13233),
        ("peopleDevTrain.txt", 4038, 9525),
        ("peopleDevTest.txt", 1711, 3708),
    ] {
        let p = read_protocol(&protocol.join(file), parse_people).unwrap();
        assert_eq!(p.len(), people, "{file}");
        assert_eq!(p.iter().map(|x| x.1).sum::<usize>(), imgs, "{file}");
    }
    // DevTrain and DevTest people are disjoint (training never sees a test identity).
    let train = read_protocol(&protocol.join("peopleDevTrain.txt"), parse_people).unwrap();
    let test = read_protocol(&protocol.join("peopleDevTest.txt"), parse_people).unwrap();
    let names: std::collections::HashSet<_> = train.iter().map(|p| &p.0).collect();
    assert!(test.iter().all(|p| !names.contains(&p.0)));
    // A few people load through the LFW preprocessing.
    let ids = Identities::load_lfw(&images, &train[..5], &Preprocess::lfw(1, 64, 120)).unwrap();
    assert_eq!(ids.images[0][0].shape(), &[1, 64, 64]);
}

#[test]
fn omniglot_release_and_official_runs_load() {
    let Some(root) = data_dir("CNN_OMNIGLOT_DIR") else {
        return;
    };
    let bg = load_omniglot_npz(&root.join("npz/images_background.npz"), 28).unwrap();
    assert_eq!(bg.len(), 964);
    assert!(bg.images.iter().all(|v| v.len() == 20));
    assert_eq!(bg.images[0][0].shape(), &[1, 28, 28]);
    // Ink is a minority of the pixels: the mean of the normalised image is well below 0.
    let mean = bg.images[0][0].to_vec().iter().sum::<f32>() / (28.0 * 28.0);
    assert!(mean < -1.0, "mean {mean}");
    let runs = load_oneshot_runs(&root.join("one_shot_runs"), 28).unwrap();
    assert_eq!(runs.len(), 20);
    for r in &runs {
        assert_eq!((r.training.len(), r.test.len()), (20, 20), "{}", r.name);
        let mut a = r.answer.clone();
        a.sort();
        a.dedup();
        assert_eq!(a.len(), 20, "{}: every class is asked once", r.name);
    }
}
