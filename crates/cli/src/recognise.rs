//! `cnn faces verify|enroll|identify|calibrate|gallery`: face recognition people can
//! deploy. Encodings of known people are computed once and kept in a gallery file; recognising
//! someone encodes only the probe.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use faces::embedder::{Embedder, FaceInput};
use faces::eval::{ScoredPair, ThresholdRule, choose_threshold, roc};
use faces::gallery::{
    Calibration, Decision, Enrolled, Gallery, GalleryLock, Precision, content_hash,
};
use rayon::prelude::*;
use serde::Serialize;

use crate::common::{Decoded, EmbedderArgs, decode, encode, largest, reason_for, save_roc};

/// How results are printed.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// One JSON document on standard output.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header line on standard output.
    #[arg(long)]
    csv: bool,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// First face image.
    a: PathBuf,
    /// Second face image.
    b: PathBuf,
    /// Take tau from this gallery (calibrated), not the model's default.
    #[arg(long)]
    gallery: Option<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct EnrollArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// The gallery file (created when missing).
    #[arg(long)]
    gallery: PathBuf,
    /// A folder per person: each subfolder's name is the identity, its images the enrolled
    /// photos. Re-running it encodes only new or changed images.
    #[arg(long, required_unless_present = "name")]
    people: Option<PathBuf>,
    /// Enrol these image files as one person of this name.
    #[arg(long, requires = "files")]
    name: Option<String>,
    /// Image files for --name.
    files: Vec<PathBuf>,
    /// A photo with several faces enrols its largest face (otherwise such a photo is
    /// skipped, with how many faces it has).
    #[arg(long)]
    largest: bool,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct IdentifyArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// The gallery file.
    #[arg(long)]
    gallery: PathBuf,
    /// Probe images, or folders of them (searched recursively).
    #[arg(required = true)]
    probes: Vec<PathBuf>,
    /// How many nearest people to list.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// Search precision: f32, or f16 (half the memory traffic).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Write each photo with its faces boxed and named into this folder (PNG, same name).
    #[arg(long)]
    draw: Option<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// The gallery whose tau is set (it must have been made with this model).
    #[arg(long)]
    gallery: PathBuf,
    /// Labelled data: a folder per person (every pair of its images, sampled beyond 20,000
    /// of each kind).
    #[arg(long, required_unless_present = "pairs")]
    people: Option<PathBuf>,
    /// Labelled pairs instead: a CSV of `image_a,image_b,same` (same = 1 or 0), paths relative
    /// to the CSV's folder.
    #[arg(long, conflicts_with = "people")]
    pairs: Option<PathBuf>,
    /// Choose tau at this false-accept rate (e.g. 0.01) instead of at the best accuracy.
    #[arg(long, value_parser = crate::args::fraction, allow_negative_numbers = true)]
    target_far: Option<f64>,
    /// Also set a tau per identity of --people that is in the gallery (its own same pairs
    /// against everyone else's images; needs at least 2 images of the person).
    #[arg(long, requires = "people")]
    per_identity: bool,
    /// Where the ROC picture is written (default: next to the gallery, `.roc.png`).
    #[arg(long)]
    roc: Option<PathBuf>,
    /// Seed of the pair sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum GalleryCommand {
    /// The people in a gallery, with image counts and thresholds.
    List {
        /// The gallery file.
        #[arg(long)]
        gallery: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Remove a person.
    Remove {
        /// The gallery file.
        #[arg(long)]
        gallery: PathBuf,
        /// The identity.
        name: String,
    },
    /// Rename a person.
    Rename {
        /// The gallery file.
        #[arg(long)]
        gallery: PathBuf,
        /// The current name.
        from: String,
        /// The new name.
        to: String,
    },
}

/// `x,y,w,h` of a face box, rounded to tenths of a pixel.
fn box_text(f: &FaceInput) -> String {
    f.face.as_ref().map_or_else(String::new, |f| {
        let d = &f.detection;
        format!("{:.1},{:.1},{:.1},{:.1}", d.x, d.y, d.width, d.height)
    })
}

/// The image files of the photos and folders given, then the `--draw` folder (created only
/// once every argument has been found to hold images, so a refused run leaves nothing).
fn photos_and_draw_folder(paths: &[PathBuf], draw: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    for p in paths {
        let found = nn::data::image_files(p)?;
        anyhow::ensure!(!found.is_empty(), "{}: no image files", p.display());
        files.extend(found);
    }
    if let Some(dir) = draw {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --draw folder {}", dir.display()))?;
    }
    Ok(files)
}

/// Where `--draw` writes the picture of `f`: `DIR/STEM.png`, or `DIR/FOLDER_STEM_EXT.png`
/// when another listed photo has the same stem, so that no picture overwrites another.
fn drawn_path(dir: &Path, f: &Path, files: &[PathBuf]) -> PathBuf {
    let stem = f.file_stem().unwrap_or_default();
    let clash = files.iter().filter(|g| g.file_stem() == Some(stem)).count() > 1;
    let name = if clash {
        let folder = f.parent().and_then(Path::file_name).unwrap_or_default();
        format!(
            "{}_{}",
            folder.to_string_lossy(),
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .replace('.', "_")
        )
    } else {
        stem.to_string_lossy().into_owned()
    };
    dir.join(format!("{name}.png"))
}

/// The advice printed when tau was never calibrated on the user's own data.
const UNCALIBRATED: &str = "note: tau is the model's default, never calibrated on your photos; \
    run `faces calibrate --gallery G --people LABELLED_DIR` to set it from labelled examples \
    (the default accepts many different-person pairs on some photo sets)";

/// The nearest people of a decision as `name<between>distance` items joined by `sep`.
fn top_list(d: &Decision, between: &str, sep: &str) -> String {
    d.top
        .iter()
        .map(|(n, x)| format!("{n}{between}{x:.4}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// A CSV field, quoted (with doubled quotes) when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn print_json(v: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A gallery that must exist already: a missing one gets the command that makes it.
fn load_gallery(path: &Path) -> Result<Gallery> {
    anyhow::ensure!(
        path.exists(),
        "no gallery at {0}: make one with `faces enroll --gallery {0} --people DIR` (or --name NAME PHOTO)",
        path.display()
    );
    Ok(Gallery::load(path)?)
}

pub(crate) fn verify(a: &VerifyArgs) -> Result<()> {
    let model = a.model.load(None, true)?;
    let (tau, calibrated) = match &a.gallery {
        Some(g) => {
            let gal = load_gallery(g)?;
            gal.check_model(&model.fingerprint(), &model.describe(), g)?;
            (gal.tau, gal.calibration.is_some())
        }
        None => (model.tau(), false),
    };
    let decoded = decode(&model, &[a.a.clone(), a.b.clone()]);
    // The reason names the file.
    if let Some((_, why)) = decoded.bad.first() {
        bail!("{why}");
    }
    let mut chosen = vec![];
    for (f, faces) in &decoded.files {
        let face = largest(faces).with_context(|| {
            format!(
                "{}: no face found (try --detector tiny, a lower --min-score, or --crop none if the image is a face crop)",
                f.display()
            )
        })?;
        if faces.len() > 1 {
            eprintln!(
                "{}: {} faces found; comparing the largest ({})",
                f.display(),
                faces.len(),
                box_text(face)
            );
        }
        chosen.push(face);
    }
    let e = encode(&model, &chosen.iter().map(|f| &f.input).collect::<Vec<_>>())?;
    let score = model.scorer();
    let d = score(&e[0], &e[1]);
    let same = d <= tau;
    #[derive(Serialize)]
    struct Out<'a> {
        a: &'a Path,
        b: &'a Path,
        same: bool,
        distance: f32,
        tau: f32,
        tau_calibrated: bool,
        a_box: String,
        b_box: String,
    }
    let out = Out {
        a: &a.a,
        b: &a.b,
        same,
        distance: d,
        tau,
        tau_calibrated: calibrated,
        a_box: box_text(chosen[0]),
        b_box: box_text(chosen[1]),
    };
    if a.out.json {
        print_json(&out)?;
    } else if a.out.csv {
        println!("a,b,same,distance,tau,tau_calibrated");
        println!(
            "{},{},{same},{d:.6},{tau:.6},{calibrated}",
            csv_field(&a.a.display().to_string()),
            csv_field(&a.b.display().to_string())
        );
    } else {
        println!(
            "{}: distance {d:.4} {} tau {tau:.4}",
            if same {
                "SAME person"
            } else {
                "DIFFERENT people"
            },
            if same { "<=" } else { ">" }
        );
    }
    if !calibrated {
        eprintln!("{UNCALIBRATED}");
    }
    Ok(())
}

pub(crate) fn enroll(a: &EnrollArgs) -> Result<()> {
    let t0 = Instant::now();
    crate::args::output_file(&a.gallery, "--gallery")?;
    let model = a.model.load(None, true)?;
    // The people and their files, each checked before anything is written.
    let mut people: Vec<(String, Vec<PathBuf>)> = vec![];
    if let Some(dir) = &a.people {
        for (name, folder) in nn::data::class_folders(dir, "person")? {
            people.push((name, nn::data::image_files(&folder)?));
        }
    }
    if let Some(name) = &a.name {
        people.push((name.clone(), a.files.clone()));
    }
    for (name, _) in &people {
        faces::gallery::check_name(name).with_context(|| match &a.people {
            Some(dir) => format!("a person folder of {}", dir.display()),
            None => "--name".to_string(),
        })?;
    }
    let _lock = GalleryLock::acquire(&a.gallery)?;
    let mut gallery = if a.gallery.exists() {
        let g = Gallery::load(&a.gallery)?;
        g.check_model(&model.fingerprint(), &model.describe(), &a.gallery)?;
        g
    } else {
        Gallery::new(
            model.fingerprint(),
            model.describe(),
            model.dim(),
            model.tau(),
        )
    };
    #[derive(Serialize)]
    struct Row {
        identity: String,
        added: usize,
        kept: usize,
        dropped: usize,
        skipped: Vec<(PathBuf, String)>,
    }
    let mut rows = vec![];
    let mut encoded_total = 0;
    for (name, files) in &people {
        anyhow::ensure!(!files.is_empty(), "person {name:?}: no files");
        let mut hashed = vec![];
        let mut skipped = vec![];
        for f in files {
            match content_hash(f) {
                Ok(h) => hashed.push((f.display().to_string(), h, f.clone())),
                Err(e) => skipped.push((f.clone(), e.to_string())),
            }
        }
        let listed: Vec<(String, String)> = hashed
            .iter()
            .map(|(s, h, _)| (s.clone(), h.clone()))
            .collect();
        let need: Vec<PathBuf> = gallery
            .needs_encoding(name, &listed)
            .iter()
            .map(PathBuf::from)
            .collect();
        let decoded = decode(&model, &need);
        skipped.extend(decoded.bad);
        let mut ok: Vec<(&PathBuf, &FaceInput)> = vec![];
        for (f, faces) in &decoded.files {
            match (faces.len(), largest(faces)) {
                (1, Some(face)) => ok.push((f, face)),
                (n, Some(face)) if n > 1 && a.largest => ok.push((f, face)),
                (0, _) => skipped.push((
                    f.clone(),
                    format!("{}: no face found", f.display()),
                )),
                (n, _) => skipped.push((
                    f.clone(),
                    format!(
                        "{}: {n} faces found; enrol photos with exactly one face, or pass --largest",
                        f.display()
                    ),
                )),
            }
        }
        let vectors = encode(
            &model,
            &ok.iter().map(|(_, x)| &x.input).collect::<Vec<_>>(),
        )?;
        encoded_total += ok.len();
        let encoded: Vec<Enrolled> = ok
            .iter()
            .zip(vectors)
            .map(|((f, _), encoding)| {
                let source = f.display().to_string();
                let content_hash = listed
                    .iter()
                    .find(|l| l.0 == source)
                    .map(|l| l.1.clone())
                    .unwrap_or_default();
                Enrolled {
                    source,
                    content_hash,
                    encoding,
                }
            })
            .collect();
        // Only readable files stay listed.
        let keep: Vec<(String, String)> = listed
            .into_iter()
            .filter(|(s, _)| !skipped.iter().any(|(f, _)| f.display().to_string() == *s))
            .collect();
        anyhow::ensure!(
            !keep.is_empty(),
            "person {name:?}: no readable image among {} file(s) ({}); nothing was written",
            files.len(),
            skipped
                .iter()
                .map(|(f, why)| format!("{}: {why}", f.display()))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let (added, kept, dropped) = gallery.enroll(name, &keep, encoded)?;
        rows.push(Row {
            identity: name.clone(),
            added,
            kept,
            dropped,
            skipped,
        });
    }
    gallery.save(&a.gallery)?;
    if a.out.json {
        print_json(&serde_json::json!({
            "gallery": a.gallery,
            "encoded": encoded_total,
            "identities": gallery.identities.len(),
            "images": gallery.len(),
            "people": rows,
            "seconds": t0.elapsed().as_secs_f64(),
        }))?;
    } else if a.out.csv {
        println!("identity,added,kept,dropped,skipped");
        for r in &rows {
            println!(
                "{},{},{},{},{}",
                csv_field(&r.identity),
                r.added,
                r.kept,
                r.dropped,
                r.skipped.len()
            );
        }
    } else {
        println!(
            "{:<28} {:>6} {:>6} {:>8} {:>8}",
            "identity", "added", "kept", "dropped", "skipped"
        );
        for r in &rows {
            println!(
                "{:<28} {:>6} {:>6} {:>8} {:>8}",
                r.identity,
                r.added,
                r.kept,
                r.dropped,
                r.skipped.len()
            );
            for (f, why) in &r.skipped {
                println!("    skipped {}: {}", f.display(), reason_for(f, why));
            }
        }
        println!(
            "{}: {} people, {} images; encoded {encoded_total} image(s) in {:.1} s",
            a.gallery.display(),
            gallery.identities.len(),
            gallery.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub(crate) fn identify(a: &IdentifyArgs) -> Result<()> {
    // Flags first: a typo is reported before any file is read.
    anyhow::ensure!(
        (1..=10_000).contains(&a.top_k),
        "--top-k must be from 1 to 10000, not {}",
        a.top_k
    );
    let precision = match a.precision.as_str() {
        "f32" => Precision::F32,
        "f16" => Precision::F16,
        p => bail!("--precision must be f32 or f16, not {p:?}"),
    };
    let gallery = load_gallery(&a.gallery)?;
    let model = a.model.load(None, true)?;
    gallery.check_model(&model.fingerprint(), &model.describe(), &a.gallery)?;
    anyhow::ensure!(
        !gallery.is_empty(),
        "{} has nobody enrolled: run `faces enroll` first",
        a.gallery.display()
    );
    let files = photos_and_draw_folder(&a.probes, a.draw.as_deref())?;
    let decoded = decode(&model, &files);
    let inputs: Vec<&tensor::Tensor> = decoded
        .files
        .iter()
        .flat_map(|(_, faces)| faces.iter().map(|f| &f.input))
        .collect();
    let vectors = encode(&model, &inputs)?;
    let index = gallery.index(precision);
    // One result per face: file, face number, box, decision.
    let mut results: Vec<(String, usize, &FaceInput, Decision)> = vec![];
    let mut no_face = vec![];
    let mut v = vectors.iter();
    for (f, faces) in &decoded.files {
        if faces.is_empty() {
            no_face.push(f.display().to_string());
        }
        for (i, face) in faces.iter().enumerate() {
            let found = index.search(v.next().expect("one per face"), a.top_k.max(2))?;
            let mut d = gallery.decide(&found);
            d.top.truncate(a.top_k);
            results.push((f.display().to_string(), i, face, d));
        }
    }
    if let Some(dir) = &a.draw {
        for (f, faces) in &decoded.files {
            let mut img = nn::data::read_image(f, nn::data::DEFAULT_MAX_PIXELS)?.to_rgb8();
            let shown = f.display().to_string();
            let labelled: Vec<(&faces::detect::Face, Option<&str>)> = results
                .iter()
                .filter(|r| r.0 == shown)
                .filter_map(|r| {
                    r.2.face
                        .as_ref()
                        .map(|face| (face, Some(r.3.identity.as_deref().unwrap_or("unknown"))))
                })
                .collect();
            if faces.iter().all(|x| x.face.is_none()) && !faces.is_empty() {
                continue;
            }
            faces::detect::draw::draw_faces(&mut img, &labelled);
            let out = drawn_path(dir, f, &files);
            img.save(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
    }
    if a.out.json {
        #[derive(Serialize)]
        struct Row<'a> {
            probe: &'a str,
            face: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            r#box: Option<[f64; 4]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            score: Option<f32>,
            #[serde(flatten)]
            decision: &'a Decision,
        }
        let rows: Vec<Row> = results
            .iter()
            .map(|(p, i, f, d)| Row {
                probe: p,
                face: *i,
                r#box: f.face.as_ref().map(|f| {
                    let b = &f.detection;
                    [b.x, b.y, b.width, b.height]
                }),
                score: f.face.as_ref().map(|f| f.detection.score),
                decision: d,
            })
            .collect();
        let skipped: Vec<_> = decoded
            .bad
            .iter()
            .map(|(f, why)| serde_json::json!({"probe": f, "error": why}))
            .chain(
                no_face
                    .iter()
                    .map(|f| serde_json::json!({"probe": f, "error": "no face found"})),
            )
            .collect();
        print_json(&serde_json::json!({
            "results": rows,
            "skipped": skipped,
            "tau_calibrated": gallery.calibration.is_some(),
        }))?;
    } else if a.out.csv {
        println!("probe,face,box,identity,distance,tau,margin,top");
        for (p, i, f, d) in &results {
            println!(
                "{},{i},{},{},{:.6},{:.6},{:.6},{}",
                csv_field(p),
                csv_field(&box_text(f)),
                csv_field(d.identity.as_deref().unwrap_or("unknown")),
                d.distance,
                d.tau,
                d.margin,
                csv_field(&top_list(d, ":", ";"))
            );
        }
    } else {
        let w = results.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
        let detects = model.detects();
        println!(
            "{:<w$} {}  {:<24} {:>8} {:>8} {:>8}  top-{}",
            "probe",
            if detects {
                "face  box                      "
            } else {
                ""
            },
            "identity",
            "distance",
            "tau",
            "margin",
            a.top_k
        );
        for (p, i, f, d) in &results {
            let face = if detects {
                format!("{i:>4}  {:<25}", box_text(f))
            } else {
                String::new()
            };
            println!(
                "{p:<w$} {face}  {:<24} {:>8.4} {:>8.4} {:>8.4}  {}",
                d.identity.as_deref().unwrap_or("unknown"),
                d.distance,
                d.tau,
                d.margin,
                top_list(d, " ", ", ")
            );
        }
    }
    for (_, why) in &decoded.bad {
        eprintln!("skipped: {why}");
    }
    for f in &no_face {
        eprintln!("{f}: no face found");
    }
    if gallery.calibration.is_none() {
        eprintln!("{UNCALIBRATED}");
    }
    anyhow::ensure!(!decoded.files.is_empty(), "no probe could be read");
    Ok(())
}

/// Labelled faces of a folder per person: the person names, each face's person, and the
/// faces (the largest of each photo; photos without a face or unreadable are reported on
/// standard error and left out). `store` keeps the decoded faces alive.
fn load_people_faces<'s>(
    model: &Embedder,
    dir: &Path,
    store: &'s mut Option<Vec<(usize, Decoded)>>,
) -> Result<(Vec<String>, Vec<usize>, Vec<&'s tensor::Tensor>)> {
    let people = nn::data::class_folders(dir, "person")?;
    let mut all = vec![];
    for (i, (_, folder)) in people.iter().enumerate() {
        all.push((i, decode(model, &nn::data::image_files(folder)?)));
    }
    let all = store.insert(all);
    let (mut labels, mut refs) = (vec![], vec![]);
    for (i, d) in all.iter() {
        for (f, why) in &d.bad {
            eprintln!("skipped {}: {}", f.display(), reason_for(f, why));
        }
        for (f, faces) in &d.files {
            match largest(faces) {
                Some(face) => {
                    labels.push(*i);
                    refs.push(&face.input);
                }
                None => eprintln!("skipped {}: no face found", f.display()),
            }
        }
    }
    anyhow::ensure!(
        !refs.is_empty(),
        "{}: no face could be read from any person folder",
        dir.display()
    );
    Ok((people.into_iter().map(|p| p.0).collect(), labels, refs))
}

/// Reads a `image_a,image_b,same` CSV (paths relative to its folder; a header line is
/// allowed).
fn read_pairs_csv(path: &Path) -> Result<Vec<(PathBuf, PathBuf, bool)>> {
    let text =
        nn::limits::read_text(path).with_context(|| format!("cannot read {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(faces::data::parse_pairs_csv(&text, path)?
        .into_iter()
        .map(|(a, b, same)| (dir.join(a), dir.join(b), same))
        .collect())
}

pub(crate) fn calibrate(a: &CalibrateArgs) -> Result<()> {
    use rand::SeedableRng;
    if let Some(roc) = &a.roc {
        crate::args::output_file(roc, "--roc")?;
    }
    // The gallery is checked before the (long) calibration, and read again under the lock.
    load_gallery(&a.gallery)?;
    let model = a.model.load(None, true)?;
    let score = model.scorer();
    let mut decoded_people = None;
    // (person, image) rows, and index pairs over them.
    let (pairs, per_person): (Vec<ScoredPair>, Vec<(String, Vec<ScoredPair>)>) =
        if let Some(dir) = &a.people {
            let (names, labels, refs) = load_people_faces(&model, dir, &mut decoded_people)?;
            let emb = crate::common::embed_with_progress(&model, &refs)?;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
            let idx = faces::oneshot::index_pairs(&labels, 20_000, &mut rng);
            let scored = faces::oneshot::score_pairs(&emb, model.dim(), &idx, &score);
            let per: Vec<(String, Vec<ScoredPair>)> = names
                .iter()
                .enumerate()
                .map(|(p, name)| {
                    let mine: Vec<ScoredPair> = idx
                        .iter()
                        .zip(&scored)
                        .filter(|((i, j, _), _)| labels[*i] == p || labels[*j] == p)
                        .map(|(_, s)| *s)
                        .collect();
                    (name.clone(), mine)
                })
                .collect();
            (scored, per)
        } else {
            let csv = a.pairs.as_ref().expect("clap requires one");
            let listed = read_pairs_csv(csv)?;
            let mut files: Vec<PathBuf> = listed
                .iter()
                .flat_map(|(x, y, _)| [x.clone(), y.clone()])
                .collect();
            files.sort();
            files.dedup();
            let decoded = decode(&model, &files);
            // The reason names the file.
            if let Some((_, why)) = decoded.bad.first() {
                bail!("{why}");
            }
            let mut chosen = vec![];
            for (f, faces) in &decoded.files {
                chosen.push(
                    &largest(faces)
                        .with_context(|| format!("{}: no face found", f.display()))?
                        .input,
                );
            }
            let vectors = encode(&model, &chosen)?;
            let ok = &decoded.files;
            let at = |f: &PathBuf| ok.iter().position(|x| &x.0 == f).expect("decoded");
            let scored = listed
                .iter()
                .map(|(x, y, same)| ScoredPair {
                    distance: score(&vectors[at(x)], &vectors[at(y)]),
                    same: *same,
                })
                .collect();
            (scored, vec![])
        };
    let rule = a
        .target_far
        .map_or(ThresholdRule::BestAccuracy, ThresholdRule::TargetFar);
    let (tau, cal) = Calibration::measure(&pairs, rule).map_err(anyhow::Error::msg)?;
    let curve = roc(&pairs);
    let roc_path = a.roc.clone().unwrap_or_else(|| {
        let mut p = a.gallery.as_os_str().to_owned();
        p.push(".roc.png");
        PathBuf::from(p)
    });
    save_roc(
        &roc_path,
        "CALIBRATION ROC",
        &[(format!("AUC {:.4}", cal.auc), &curve)],
    )?;
    // Write under the lock, re-reading the gallery so concurrent edits are not lost.
    let _lock = GalleryLock::acquire(&a.gallery)?;
    let mut gallery = Gallery::load(&a.gallery)?;
    gallery.check_model(&model.fingerprint(), &model.describe(), &a.gallery)?;
    gallery.tau = tau;
    gallery.calibration = Some(cal.clone());
    let mut own = vec![];
    if a.per_identity {
        for (name, mine) in &per_person {
            if !gallery.identities.iter().any(|i| &i.name == name) {
                continue;
            }
            if let Ok(t) = choose_threshold(mine, rule) {
                gallery.set_identity_tau(name, Some(t))?;
                own.push((name.clone(), t));
            }
        }
    }
    gallery.save(&a.gallery)?;
    if a.out.json {
        print_json(&serde_json::json!({
            "tau": tau, "calibration": cal, "per_identity": own, "roc": roc_path,
        }))?;
    } else if a.out.csv {
        println!("rule,tau,accuracy,far,frr,auc,same_pairs,different_pairs");
        println!(
            "{},{tau:.6},{:.6},{:.6},{:.6},{:.6},{},{}",
            cal.rule, cal.accuracy, cal.far, cal.frr, cal.auc, cal.pairs.0, cal.pairs.1
        );
    } else {
        println!(
            "tau {tau:.4} ({}) on {} same / {} different pairs: accuracy {:.2} %, false accepts {:.2} %, false rejects {:.2} %, AUC {:.4}",
            cal.rule,
            cal.pairs.0,
            cal.pairs.1,
            100.0 * cal.accuracy,
            100.0 * cal.far,
            100.0 * cal.frr,
            cal.auc
        );
        for (n, t) in &own {
            println!("  {n}: own tau {t:.4}");
        }
        println!(
            "stored in {}; ROC in {}",
            a.gallery.display(),
            roc_path.display()
        );
    }
    Ok(())
}

pub(crate) fn gallery(cmd: &GalleryCommand) -> Result<()> {
    match cmd {
        GalleryCommand::List { gallery, out } => {
            let g = load_gallery(gallery)?;
            if out.json {
                #[derive(Serialize)]
                struct Person<'a> {
                    name: &'a str,
                    images: usize,
                    tau: Option<f32>,
                }
                let people: Vec<Person> = g
                    .identities
                    .iter()
                    .map(|i| Person {
                        name: &i.name,
                        images: i.images.len(),
                        tau: i.tau,
                    })
                    .collect();
                print_json(&serde_json::json!({
                    "model": g.model, "model_description": g.model_description, "dim": g.dim,
                    "tau": g.tau, "calibration": g.calibration, "people": people,
                }))?;
            } else if out.csv {
                println!("identity,images,tau");
                for i in &g.identities {
                    println!(
                        "{},{},{}",
                        csv_field(&i.name),
                        i.images.len(),
                        i.tau.map_or(String::new(), |t| format!("{t:.6}"))
                    );
                }
            } else {
                println!(
                    "{}: {} people, {} images, {}-D encodings of {} (model {})",
                    gallery.display(),
                    g.identities.len(),
                    g.len(),
                    g.dim,
                    g.model_description,
                    g.model.chars().take(12).collect::<String>()
                );
                match &g.calibration {
                    Some(c) => println!(
                        "tau {:.4} ({} on {}+{} pairs: accuracy {:.2} %, FAR {:.2} %)",
                        g.tau,
                        c.rule,
                        c.pairs.0,
                        c.pairs.1,
                        100.0 * c.accuracy,
                        100.0 * c.far
                    ),
                    None => println!("tau {:.4} (the model's default; not calibrated)", g.tau),
                }
                println!("{:<28} {:>6} {:>8}", "identity", "images", "own tau");
                for i in &g.identities {
                    println!(
                        "{:<28} {:>6} {:>8}",
                        i.name,
                        i.images.len(),
                        i.tau.map_or("-".into(), |t| format!("{t:.4}"))
                    );
                }
            }
        }
        GalleryCommand::Remove { gallery, name } => {
            load_gallery(gallery)?;
            let _lock = GalleryLock::acquire(gallery)?;
            let mut g = Gallery::load(gallery)?;
            let gone = g.remove(name)?;
            g.save(gallery)?;
            println!(
                "removed {name} ({} images); {} people left",
                gone.images.len(),
                g.identities.len()
            );
        }
        GalleryCommand::Rename { gallery, from, to } => {
            load_gallery(gallery)?;
            let _lock = GalleryLock::acquire(gallery)?;
            let mut g = Gallery::load(gallery)?;
            g.rename(from, to)?;
            g.save(gallery)?;
            println!("renamed {from} to {to}");
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct DetectCmdArgs {
    /// Photos, or folders of them (searched recursively).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    #[command(flatten)]
    detect: crate::common::DetectArgs,
    /// Write each photo with its boxes and landmarks drawn into this folder (PNG).
    #[arg(long)]
    draw: Option<PathBuf>,
    /// Boxes and scores only (no landmark net).
    #[arg(long)]
    no_landmarks: bool,
    #[command(flatten)]
    out: OutputArgs,
}

/// `faces detect`: the faces of photos, with boxes, scores and 68 landmarks.
pub(crate) fn detect(a: &DetectCmdArgs) -> Result<()> {
    let t0 = Instant::now();
    let finder = a.detect.finder()?;
    let files = photos_and_draw_folder(&a.photos, a.draw.as_deref())?;
    let bar =
        (files.len() > 1).then(|| crate::common::progress_bar(files.len() as u64, "detecting"));
    type Found = std::result::Result<(u32, u32, Vec<faces::detect::Face>), String>;
    let results: Vec<(PathBuf, Found)> = files
        .par_iter()
        .map(|f| {
            let r = (|| -> nn::Result<_> {
                let img = nn::data::read_image(f, nn::data::DEFAULT_MAX_PIXELS)?.to_rgb8();
                let faces = if a.no_landmarks {
                    let raw = finder.detector.run(&img, &finder.options)?;
                    raw.faces(&finder.options)
                        .into_iter()
                        .map(|d| faces::detect::Face {
                            detection: d,
                            landmarks: None,
                        })
                        .collect()
                } else {
                    finder.find(&img)?
                };
                if let Some(dir) = &a.draw {
                    let mut img = img.clone();
                    let shown: Vec<_> = faces.iter().map(|f| (f, None)).collect();
                    faces::detect::draw::draw_faces(&mut img, &shown);
                    let out = drawn_path(dir, f, &files);
                    img.save(&out)
                        .map_err(|e| nn::Error::corrupt(&out, format!("cannot write: {e}")))?;
                }
                Ok((img.width(), img.height(), faces))
            })();
            if let Some(b) = &bar {
                b.inc(1);
            }
            (f.clone(), r.map_err(|e| e.to_string()))
        })
        .collect();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let total: usize = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|r| r.2.len())
        .sum();
    if a.out.json {
        let photos: Vec<_> = results
            .iter()
            .filter_map(|(f, r)| r.as_ref().ok().map(|r| (f, r)))
            .map(|(f, (w, h, faces))| {
                serde_json::json!({"photo": f, "width": w, "height": h, "faces": faces.iter().map(|x| {
                    let d = &x.detection;
                    serde_json::json!({"box": [d.x, d.y, d.width, d.height], "score": d.score, "landmarks": x.landmarks})
                }).collect::<Vec<_>>()})
            })
            .collect();
        let skipped: Vec<_> = results
            .iter()
            .filter_map(|(f, r)| {
                r.as_ref()
                    .err()
                    .map(|e| serde_json::json!({"photo": f, "error": e}))
            })
            .collect();
        print_json(&serde_json::json!({"photos": photos, "skipped": skipped, "faces": total}))?;
    } else if a.out.csv {
        println!("photo,face,score,x,y,width,height");
        for (f, r) in &results {
            if let Ok((_, _, faces)) = r {
                for (i, x) in faces.iter().enumerate() {
                    let d = &x.detection;
                    println!(
                        "{},{i},{:.4},{:.2},{:.2},{:.2},{:.2}",
                        csv_field(&f.display().to_string()),
                        d.score,
                        d.x,
                        d.y,
                        d.width,
                        d.height
                    );
                }
            }
        }
    } else {
        for (f, r) in &results {
            if let Ok((w, h, faces)) = r {
                println!("{} ({w} x {h}): {} face(s)", f.display(), faces.len());
                for (i, x) in faces.iter().enumerate() {
                    let d = &x.detection;
                    println!(
                        "  {i:>3}  score {:.3}  box x {:.1} y {:.1} w {:.1} h {:.1}",
                        d.score, d.x, d.y, d.width, d.height
                    );
                }
            }
        }
        println!(
            "{total} face(s) in {} photo(s) in {:.1} s",
            results.iter().filter(|r| r.1.is_ok()).count(),
            t0.elapsed().as_secs_f64()
        );
    }
    for (_, r) in &results {
        if let Err(why) = r {
            eprintln!("skipped: {why}");
        }
    }
    anyhow::ensure!(
        results.iter().any(|r| r.1.is_ok()),
        "no photo could be read"
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// First photo (its largest face).
    a: PathBuf,
    /// Second photo (its largest face).
    b: PathBuf,
    /// Where the picture is written.
    #[arg(long, default_value = "explain.png")]
    out: PathBuf,
    /// Side of the occluded square, in input pixels (150 for the pretrained network).
    #[arg(long, default_value_t = 30)]
    patch: usize,
    /// Step between occluded squares.
    #[arg(long, default_value_t = 8)]
    stride: usize,
    /// One JSON document on standard output.
    #[arg(long)]
    json: bool,
}

/// `faces explain`: which regions of two faces drive their distance.
pub(crate) fn explain(a: &ExplainArgs) -> Result<()> {
    crate::args::output_file(&a.out, "--out")?;
    let model = a.model.load(None, true)?;
    let decoded = decode(&model, &[a.a.clone(), a.b.clone()]);
    if let Some((_, why)) = decoded.bad.first() {
        bail!("{why}");
    }
    let mut inputs = vec![];
    for (f, faces) in &decoded.files {
        let face = largest(faces).with_context(|| format!("{}: no face found", f.display()))?;
        inputs.push(&face.input);
    }
    let e = faces::explain::occlusion(&model, inputs[0], inputs[1], a.patch, a.stride)?;
    let pre = model.preprocess();
    let picture = faces::explain::render(&e, &pre.to_image(inputs[0]), &pre.to_image(inputs[1]));
    // Twice the size: a 150-pixel chip is small on a screen.
    let picture = image::imageops::resize(
        &picture,
        picture.width() * 2,
        picture.height() * 2,
        image::imageops::FilterType::Triangle,
    );
    picture
        .save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let tau = model.tau();
    let strongest = |m: &[f32]| m.iter().fold(0f32, |x, v| x.max(v.abs()));
    if a.json {
        print_json(&serde_json::json!({
            "a": a.a, "b": a.b, "distance": e.distance, "tau": tau, "same": e.distance <= tau,
            "picture": a.out, "grid": [e.maps[0].0, e.maps[0].1], "patch": e.patch, "stride": e.stride,
            "largest_change_a": strongest(&e.maps[0].2), "largest_change_b": strongest(&e.maps[1].2),
        }))?;
    } else {
        println!(
            "distance {:.4} ({} tau {tau:.4}); occluding one {}-pixel square moves it by up to {:.4} (first face) / {:.4} (second)",
            e.distance,
            if e.distance <= tau {
                "same person: <="
            } else {
                "different people: >"
            },
            e.patch,
            strongest(&e.maps[0].2),
            strongest(&e.maps[1].2)
        );
        println!(
            "{}: each face, then the same with red where it made the two alike and blue where it set them apart",
            a.out.display()
        );
    }
    Ok(())
}
