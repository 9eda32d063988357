//! The face recognition commands end to end, on the bundled ORL faces and the bundled
//! pretrained network: enrol, re-enrol (nothing encoded), identify, and bad input (not an
//! image, an empty folder, a person without a readable image, an unknown identity, a process
//! killed during enrolment): each a clear error or a reported skip, and the gallery untouched.

#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cnn, text};

/// `faces enroll --gallery G --people DIR [--json]`.
fn enroll(gallery: &str, people: &Path, json: bool) -> Output {
    // ORL images are face crops, not photos.
    let mut args = vec![
        "faces",
        "enroll",
        "--crop",
        "none",
        "--gallery",
        gallery,
        "--people",
    ];
    args.push(people.to_str().unwrap());
    if json {
        args.push("--json");
    }
    cnn(&args)
}

fn orl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faces/assets/orl")
}

fn tempdir(name: &str) -> PathBuf {
    common::tempdir("recognise", name)
}

/// Images `images` of ORL person `s` into `dst` (created), keeping their names.
fn copy_orl(s: usize, images: std::ops::RangeInclusive<usize>, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for i in images {
        std::fs::copy(
            orl().join(format!("s{s}/{i}.pgm")),
            dst.join(format!("{i}.pgm")),
        )
        .unwrap();
    }
}

/// `people` ORL people with images 1-3 each, under `dir/people`; probes (image 4 of each, and
/// a text file) under `dir/probes`.
fn setup(dir: &Path, people: usize) -> (PathBuf, PathBuf) {
    let (p, q) = (dir.join("people"), dir.join("probes"));
    std::fs::create_dir_all(&q).unwrap();
    for s in 1..=people {
        let person = p.join(format!("s{s}"));
        std::fs::create_dir_all(&person).unwrap();
        copy_orl(s, 1..=3, &person);
        std::fs::copy(
            orl().join(format!("s{s}/4.pgm")),
            q.join(format!("s{s}_4.pgm")),
        )
        .unwrap();
    }
    std::fs::write(q.join("notes.txt"), "not an image").unwrap();
    (p, q)
}

#[test]
fn enrol_re_enrol_identify_and_bad_input() {
    let dir = tempdir("flow");
    let (people, probes) = setup(&dir, 4);
    let g = dir.join("people.gallery");
    let gs = g.to_str().unwrap();
    let o = enroll(gs, &people, true);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["encoded"], 12);
    assert_eq!(v["identities"], 4);
    // Unchanged folder: nothing encoded.
    let o = enroll(gs, &people, true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["encoded"], 0, "{}", text(&o));
    // One changed image: one encoded.
    std::fs::copy(orl().join("s1/9.pgm"), people.join("s1/2.pgm")).unwrap();
    let o = enroll(gs, &people, true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["encoded"], 1, "{}", text(&o));

    // Identify: the text file is a reported skip, every face gets an answer.
    let o = cnn(&[
        "faces",
        "identify",
        "--crop",
        "none",
        "--gallery",
        gs,
        probes.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1);
    assert!(text(&o).contains("notes.txt"));
    let correct = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            let probe = r["probe"].as_str().unwrap();
            let who = r["top"][0][0].as_str().unwrap();
            probe.contains(&format!("{who}_"))
        })
        .count();
    assert!(
        correct >= 3,
        "nearest person right for {correct} of 4 ORL probes"
    );

    let before = std::fs::read(&g).unwrap();
    // An empty folder of people.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = enroll(gs, &empty, false);
    assert!(!o.status.success());
    assert!(text(&o).contains("no person folders"), "{}", text(&o));
    // A person folder with no readable image.
    let bad = dir.join("bad");
    std::fs::create_dir_all(bad.join("ghost")).unwrap();
    std::fs::write(bad.join("ghost/a.jpg"), "garbage").unwrap();
    let o = enroll(gs, &bad, false);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("\"ghost\"") && t.contains("no readable image"),
        "{t}"
    );
    // An unknown identity.
    let o = cnn(&["faces", "gallery", "remove", "--gallery", gs, "nobody"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no identity \"nobody\""), "{}", text(&o));
    // A probe that does not exist.
    let o = cnn(&[
        "faces",
        "identify",
        "--crop",
        "none",
        "--gallery",
        gs,
        dir.join("missing.jpg").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("missing.jpg"), "{}", text(&o));
    assert_eq!(
        std::fs::read(&g).unwrap(),
        before,
        "failed commands left the gallery as it was"
    );
    assert!(!Path::new(&format!("{gs}.lock")).exists(), "lock released");

    // Rename and remove work and are listed.
    assert!(
        cnn(&["faces", "gallery", "rename", "--gallery", gs, "s1", "Ada"])
            .status
            .success()
    );
    assert!(
        cnn(&["faces", "gallery", "remove", "--gallery", gs, "s2"])
            .status
            .success()
    );
    let o = cnn(&["faces", "gallery", "list", "--gallery", gs, "--csv"]);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(t.contains("Ada,3,") && !t.contains("s2,"), "{t}");
}

#[test]
fn a_process_killed_during_enrol_leaves_the_previous_gallery_loadable() {
    let dir = tempdir("kill");
    let (people, _) = setup(&dir, 2);
    let g = dir.join("people.gallery");
    let gs = g.to_str().unwrap();
    assert!(enroll(gs, &people, false).status.success());
    let before = std::fs::read(&g).unwrap();
    // A bigger enrolment (all 40 bundled people), killed at several points.
    for delay_ms in [150u64, 400, 900] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cnn"))
            .args([
                "faces",
                "enroll",
                "--crop",
                "none",
                "--gallery",
                gs,
                "--people",
                orl().to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        let o = cnn(&["faces", "gallery", "list", "--gallery", gs, "--json"]);
        assert!(
            o.status.success(),
            "gallery unreadable after kill at {delay_ms} ms: {}",
            text(&o)
        );
        let now = std::fs::read(&g).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let n = v["people"].as_array().unwrap().len();
        assert!(
            now == before || n == 40 || finished,
            "killed at {delay_ms} ms: neither the old gallery nor the complete new one ({n} people)"
        );
        // The killed writer's lock (if it had taken it) names a dead process: the next writer
        // takes it over, and leaves no lock behind.
        let o = enroll(gs, &people, false);
        assert!(o.status.success(), "{}", text(&o));
        assert!(!PathBuf::from(format!("{gs}.lock")).exists());
    }
}

#[test]
fn calibrate_sets_tau_from_labelled_people_and_pairs() {
    let dir = tempdir("calibrate");
    let (people, _) = setup(&dir, 6);
    let g = dir.join("people.gallery");
    let gs = g.to_str().unwrap();
    assert!(enroll(gs, &people, false).status.success());
    // Labelled data: ORL people 7-12, all ten images each.
    let labelled = dir.join("labelled");
    for s in 7..=12 {
        let d = labelled.join(format!("s{s}"));
        std::fs::create_dir_all(&d).unwrap();
        copy_orl(s, 1..=10, &d);
    }
    let roc = dir.join("roc.png");
    let o = cnn(&[
        "faces",
        "calibrate",
        "--crop",
        "none",
        "--gallery",
        gs,
        "--people",
        labelled.to_str().unwrap(),
        "--target-far",
        "0.05",
        "--roc",
        roc.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tau = v["tau"].as_f64().unwrap();
    assert!(v["calibration"]["far"].as_f64().unwrap() <= 0.05);
    assert_eq!(v["calibration"]["pairs"][0], 6 * 45);
    assert!(roc.exists());
    let o = cnn(&["faces", "gallery", "list", "--gallery", gs, "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!((listed["tau"].as_f64().unwrap() - tau).abs() < 1e-6);
    assert_eq!(listed["calibration"]["rule"], "far<=0.05");

    // The same from a pairs CSV; a malformed line is named.
    let csv = labelled.join("pairs.csv");
    std::fs::write(&csv, "image_a,image_b,same\ns7/1.pgm,s7/2.pgm,1\ns7/1.pgm,s8/1.pgm,0\ns9/3.pgm,s9/4.pgm,1\ns9/3.pgm,s10/5.pgm,0\n").unwrap();
    let calibrate_from = |csv: &Path, json: bool| {
        let mut args = vec![
            "faces",
            "calibrate",
            "--crop",
            "none",
            "--gallery",
            gs,
            "--pairs",
        ];
        args.push(csv.to_str().unwrap());
        if json {
            args.push("--json");
        }
        cnn(&args)
    };
    let o = calibrate_from(&csv, true);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["calibration"]["pairs"], serde_json::json!([2, 2]));
    std::fs::write(&csv, "s7/1.pgm,s7/2.pgm,maybe\n").unwrap();
    let o = calibrate_from(&csv, false);
    assert!(!o.status.success());
    assert!(text(&o).contains("line 1"), "{}", text(&o));
}

/// `faces eval --model pretrained --lfw DIR ARGS... --json`: the accuracy, the JSON line and
/// everything printed.
fn lfw_eval(lfw: &Path, args: &[&str]) -> (f64, serde_json::Value, String) {
    let mut all = vec!["faces", "eval", "--model", "pretrained", "--lfw"];
    all.push(lfw.to_str().unwrap());
    all.extend_from_slice(args);
    all.push("--json");
    let o = cnn(&all);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    (v["accuracy"].as_f64().unwrap(), v, text(&o))
}

/// LFW View 2 with the pretrained network through our own pipeline, when `CNN_LFW_DIR` is set:
/// its first 3 folds (1,800 pairs, k-fold among them), where 97.72 % is measured; all 10 folds
/// (97.82 %, the reference implementation of the network's spec 97.83 %) take 1.5 minutes on
/// an AVX2 machine and are a command in docs/FACES.md. The margin is four pairs, for
/// float-level changes in the kernels.
#[test]
fn lfw_view2_with_the_pretrained_network() {
    let Some(lfw) = std::env::var_os("CNN_LFW_DIR") else {
        eprintln!("skipped: set CNN_LFW_DIR to run LFW View 2 with the pretrained network");
        return;
    };
    let (acc, v, _) = lfw_eval(Path::new(&lfw), &["--view", "2", "--folds", "3"]);
    eprintln!("LFW View 2, first 3 folds: {:.2} %", 100.0 * acc);
    assert_eq!(v["n_pairs"], 1800);
    assert!(
        acc >= 0.975,
        "LFW View 2 (3 folds) accuracy {acc} (measured 97.72 %)"
    );
}

/// LFW from the photos themselves when `CNN_LFW_DIR` is set: the detection spec's DevTest
/// protocol (10 folds inside `pairsDevTest`), where its re-implementation measured 98.40 %
/// for the face containing the centre and 97.70 % for the face nearest it, and we 98.30 %.
/// CI runs its first 3 folds (300 pairs, 465 photos through the detector: 98.67 % measured;
/// all 10 take 5 minutes on an AVX2 machine); the margin is one pair.
#[test]
fn lfw_devtest_from_detected_and_aligned_faces() {
    let Some(lfw) = std::env::var_os("CNN_LFW_DIR") else {
        eprintln!("skipped: set CNN_LFW_DIR to run LFW DevTest through the face detector");
        return;
    };
    let lfw = PathBuf::from(lfw);
    let (acc, v, all) = lfw_eval(&lfw, &["--view", "devtest", "--align", "--folds", "3"]);
    eprintln!(
        "LFW DevTest, first 3 folds, detected and aligned: {:.2} %",
        100.0 * acc
    );
    assert_eq!(v["n_pairs"], 300);
    assert!(
        acc >= 0.983,
        "LFW DevTest (3 folds) accuracy {acc} (measured 98.67 %)"
    );
    assert!(all.contains("NearestCentre"), "{all}");
}

#[test]
fn demo_validation_fold_and_bad_training_options() {
    let out = tempdir("demo_validation_fold");
    let o = cnn(&[
        "demo",
        "--validation-fold",
        "1",
        "--validation-folds",
        "3",
        "--train-people",
        "6",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--style-size",
        "0",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let all = text(&o);
    assert!(
        all.contains(
            "trained on 4 of the first 6 people (s1..s6 but s3..s4), evaluated on the 2 held out"
        ),
        "{all}"
    );
    let last = String::from_utf8_lossy(&o.stdout);
    let json: serde_json::Value =
        serde_json::from_str(last.lines().last().expect("a JSON line")).unwrap();
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("validation fold 1 of 3"), "{report}");
    // Two held-out people with 10 images each: 20 * 19 / 2 pairs.
    assert_eq!(json["n_pairs"], 190);
    assert_eq!(json["validation_fold"], 1);
    // The default model has the face stream beside the trained one; each is measured alone.
    let streams = json["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[1]["stream"], "face stream");
    assert!(streams[1]["auc"].as_f64().unwrap() > 0.5);
    assert!(report.contains("The model has two streams"), "{report}");

    let o = cnn(&["demo", "--validation-fold", "3", "--style-size", "0"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--validation-fold 3 of --validation-folds 3"),
        "{}",
        text(&o)
    );
    for (args, message) in [
        (&["--zoom-aug", "2"][..], "--zoom-aug 2 must be in [0, 1)"),
        (&["--erase-aug=-1"][..], "--erase-aug -1 is a probability"),
        (
            &["--freeze-below", "20"][..],
            "--freeze-below 20 needs the squeezenet body",
        ),
        (&["--face-box", "1,2,0,5"][..], "--face-box takes X,Y,W,H"),
        (
            &["--face-stream", "-6,22"][..],
            "expected X,Y,SIDE in pixels",
        ),
        (
            &["--face-stream-weight", "1"][..],
            "--face-stream-weight 1 must lie strictly between 0 and 1",
        ),
        (
            &["--loss", "deepface-l1", "--face-stream", "-6,22,104"][..],
            "a DeepFace head scores pairs its own way",
        ),
    ] {
        let mut all = vec!["demo", "--style-size", "0"];
        all.extend_from_slice(args);
        let o = cnn(&all);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(message), "{args:?}: {}", text(&o));
    }
}

#[test]
fn visualize_looks_inside_the_pretrained_face_network() {
    let out = tempdir("visualize_pretrained");
    let faces = out.join("faces");
    copy_orl(31, 1..=2, &faces);
    let o = cnn(&[
        "visualize",
        "--model",
        "pretrained",
        "--images",
        faces.to_str().unwrap(),
        "--layers",
        "conv32_down,conv256_2",
        "--units",
        "2",
        "--out",
        out.join("vis").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(out.join("vis/index.html")).unwrap();
    assert!(html.contains("conv256_2 (stage 14, 256 units)"), "{html}");
    for f in [
        "filters.png",
        "conv32_down_deconv.png",
        "conv256_2_patches.png",
        "occlusion.png",
    ] {
        assert!(out.join("vis").join(f).is_file(), "{f}");
    }
    // A layer the network does not have is refused before anything is written.
    let refused = out.join("refused");
    let o = cnn(&[
        "visualize",
        "--model",
        "pretrained",
        "--layers",
        "conv32_1,fire5",
        "--out",
        refused.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(!refused.exists(), "wrote into {}", refused.display());
    assert!(
        text(&o).contains("no layer \"fire5\"; layers: conv32_down, maxpool"),
        "{}",
        text(&o)
    );
}

/// An ORL face as a photo: scaled 1.5 times, on a grey canvas twice its size (detectors need
/// the margin ORL's tight crops lack).
fn orl_photo(s: usize, i: usize) -> image::RgbImage {
    let face = image::open(orl().join(format!("s{s}/{i}.pgm")))
        .unwrap()
        .to_luma8();
    let big = image::imageops::resize(&face, 138, 168, image::imageops::FilterType::Triangle);
    let mut canvas = image::RgbImage::from_pixel(276, 336, image::Rgb([128, 128, 128]));
    let rgb = image::DynamicImage::ImageLuma8(big).to_rgb8();
    image::imageops::replace(&mut canvas, &rgb, 69, 84);
    canvas
}

/// Photos side by side on one canvas.
fn side_by_side(photos: &[image::RgbImage]) -> image::RgbImage {
    let w: u32 = photos.iter().map(|p| p.width()).sum();
    let h = photos.iter().map(|p| p.height()).max().unwrap();
    let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]));
    let mut x = 0;
    for p in photos {
        image::imageops::replace(&mut canvas, p, i64::from(x), 0);
        x += p.width();
    }
    canvas
}

#[test]
fn photos_detect_enrol_identify_and_verify() {
    let dir = tempdir("photos");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    orl_photo(31, 1).save(photos.join("a.png")).unwrap();
    std::fs::write(photos.join("broken.jpg"), "not a jpeg").unwrap();
    // detect: one face, the broken file named and skipped, the drawing written.
    let drawn = dir.join("drawn");
    let o = cnn(&[
        "faces",
        "detect",
        photos.to_str().unwrap(),
        "--draw",
        drawn.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["faces"], 1, "{v}");
    assert_eq!(
        v["photos"][0]["faces"][0]["landmarks"]
            .as_array()
            .unwrap()
            .len(),
        68
    );
    assert!(
        v["skipped"][0]["error"]
            .as_str()
            .unwrap()
            .contains("broken.jpg")
    );
    assert!(drawn.join("a.png").is_file());
    // An empty folder is refused before the --draw folder is made.
    let empty = dir.join("no_photos");
    std::fs::create_dir_all(&empty).unwrap();
    let never = dir.join("never_drawn");
    let o = cnn(&[
        "faces",
        "detect",
        empty.to_str().unwrap(),
        "--draw",
        never.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no image files"), "{}", text(&o));
    assert!(!never.exists(), "a refused run made its --draw folder");
    // Two photos of one name in different folders are both drawn.
    let twins = dir.join("twins");
    for (folder, i) in [("x", 2), ("y", 3)] {
        std::fs::create_dir_all(twins.join(folder)).unwrap();
        orl_photo(31, i)
            .save(twins.join(folder).join("p.png"))
            .unwrap();
    }
    let o = cnn(&[
        "faces",
        "detect",
        twins.to_str().unwrap(),
        "--draw",
        drawn.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(drawn.join("x_p_png.png").is_file() && drawn.join("y_p_png.png").is_file());
    let o = cnn(&[
        "faces",
        "detect",
        photos.join("a.png").to_str().unwrap(),
        "--csv",
    ]);
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        csv.starts_with("photo,face,score,x,y,width,height\n") && csv.lines().count() == 2,
        "{csv}"
    );

    // enrol from photos: one per person; a photo of two people is refused by count, taken
    // with --largest.
    let people = dir.join("people");
    for (s, i) in [(31, 1), (32, 1), (33, 1)] {
        let d = people.join(format!("s{s}"));
        std::fs::create_dir_all(&d).unwrap();
        orl_photo(s, i).save(d.join(format!("{i}.png"))).unwrap();
    }
    side_by_side(&[orl_photo(33, 2), orl_photo(34, 3)])
        .save(people.join("s33/two.png"))
        .unwrap();
    let g = dir.join("photos.gallery");
    let gs = g.to_str().unwrap();
    let o = cnn(&[
        "faces",
        "enroll",
        "--gallery",
        gs,
        "--people",
        people.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["images"], 3, "{v}");
    let skipped = v["people"][2]["skipped"][0][1]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        skipped.contains("two.png")
            && skipped.contains("2 faces found")
            && skipped.contains("--largest"),
        "{skipped}"
    );

    // identify every face of a group photo; names drawn on the boxes.
    let group = dir.join("group.png");
    side_by_side(&[orl_photo(31, 5), orl_photo(32, 6)])
        .save(&group)
        .unwrap();
    let named = dir.join("named");
    let o = cnn(&[
        "faces",
        "identify",
        "--gallery",
        gs,
        group.to_str().unwrap(),
        "--draw",
        named.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("never calibrated"), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let mut names: Vec<(f64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["box"][0].as_f64().unwrap(),
                r["top"][0][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    names.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(names[0].1, "s31");
    assert_eq!(names[1].1, "s32");
    assert!(named.join("group.png").is_file());

    // The same gallery with face crops as input is refused, saying what differs.
    let o = cnn(&[
        "faces",
        "identify",
        "--crop",
        "none",
        "--gallery",
        gs,
        group.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("whole image as the face") && t.contains("faces detected"),
        "{t}"
    );

    // verify two photos of one person; a photo without a face is named.
    let (x, y) = (dir.join("x.png"), dir.join("y.png"));
    orl_photo(32, 2).save(&x).unwrap();
    orl_photo(32, 7).save(&y).unwrap();
    let o = cnn(&[
        "faces",
        "verify",
        x.to_str().unwrap(),
        y.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tau_calibrated"], false);
    let blank = dir.join("blank.png");
    image::RgbImage::from_pixel(200, 200, image::Rgb([90, 90, 90]))
        .save(&blank)
        .unwrap();
    let o = cnn(&[
        "faces",
        "verify",
        x.to_str().unwrap(),
        blank.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("blank.png: no face found"),
        "{}",
        text(&o)
    );
}

/// `... | head`: a reader that goes away early ends the command quietly, not with a panic.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cnn"))
        .args(["faces", "detect", "--detector", "tiny", "--json"])
        .arg(orl())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's reading end is dropped here; the rest of the JSON cannot be written.
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
