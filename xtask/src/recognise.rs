//! `cargo xtask faces verify|enroll|identify|calibrate|gallery`: face recognition people can
//! deploy. Encodings of known people are computed once and kept in a gallery file; recognising
//! someone encodes only the probe.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use faces::embedder::Embedder;
use faces::eval::{ScoredPair, accuracy_at, auc, best_threshold, roc};
use faces::gallery::{
    Calibration, Decision, Enrolled, Gallery, GalleryLock, Precision, content_hash,
};
use rayon::prelude::*;
use serde::Serialize;

use crate::faces::{EmbedderArgs, save_roc};

/// How results are printed.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct OutputArgs {
    /// One JSON document on standard output.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header line on standard output.
    #[arg(long)]
    csv: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct VerifyArgs {
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
pub(crate) struct EnrollArgs {
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
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct IdentifyArgs {
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
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct CalibrateArgs {
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
    #[arg(long)]
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
pub(crate) enum GalleryCommand {
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

/// Image files under `path` (itself when a file), sorted; hidden files skipped.
pub(crate) fn image_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = vec![];
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let p = entry?.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Files decoded to network inputs, and files that could not be read with the reason.
type Decoded = (Vec<(PathBuf, tensor::Tensor)>, Vec<(PathBuf, String)>);

/// Decodes files in parallel; returns the readable ones' tensors and the others' reasons.
fn decode(model: &Embedder, files: &[PathBuf]) -> Decoded {
    let results: Vec<_> = files
        .par_iter()
        .map(|f| (f.clone(), model.preprocess().load(f)))
        .collect();
    let (mut ok, mut bad) = (vec![], vec![]);
    for (f, r) in results {
        match r {
            Ok(t) => ok.push((f, t)),
            Err(e) => bad.push((f, e.to_string())),
        }
    }
    (ok, bad)
}

fn encode(model: &Embedder, images: &[(PathBuf, tensor::Tensor)]) -> Result<Vec<Vec<f32>>> {
    let refs: Vec<&tensor::Tensor> = images.iter().map(|x| &x.1).collect();
    let flat = crate::faces::embed_with_progress(model, &refs)?;
    Ok(flat.chunks(model.dim()).map(<[f32]>::to_vec).collect())
}

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

pub(crate) fn verify(a: &VerifyArgs) -> Result<()> {
    let model = a.model.load(None)?;
    let tau = match &a.gallery {
        Some(g) => {
            let gal = Gallery::load(g)?;
            gal.check_model(&model.fingerprint(), g)?;
            gal.tau
        }
        None => model.tau(),
    };
    let (ok, bad) = decode(&model, &[a.a.clone(), a.b.clone()]);
    // The reason names the file.
    if let Some((_, why)) = bad.first() {
        bail!("{why}");
    }
    let e = encode(&model, &ok)?;
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
    }
    let out = Out {
        a: &a.a,
        b: &a.b,
        same,
        distance: d,
        tau,
    };
    if a.out.json {
        print_json(&out)?;
    } else if a.out.csv {
        println!("a,b,same,distance,tau");
        println!(
            "{},{},{same},{d:.6},{tau:.6}",
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
    Ok(())
}

pub(crate) fn enroll(a: &EnrollArgs) -> Result<()> {
    let t0 = Instant::now();
    let model = a.model.load(None)?;
    // The people and their files, each checked before anything is written.
    let mut people: Vec<(String, Vec<PathBuf>)> = vec![];
    if let Some(dir) = &a.people {
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        anyhow::ensure!(
            !subdirs.is_empty(),
            "{} has no person folders (expected one subfolder of images per person)",
            dir.display()
        );
        for s in subdirs {
            let name = s
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            people.push((name, image_files(&s)?));
        }
    }
    if let Some(name) = &a.name {
        people.push((name.clone(), a.files.clone()));
    }
    let _lock = GalleryLock::acquire(&a.gallery)?;
    let mut gallery = if a.gallery.exists() {
        let g = Gallery::load(&a.gallery)?;
        g.check_model(&model.fingerprint(), &a.gallery)?;
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
        let (ok, bad) = decode(&model, &need);
        skipped.extend(bad);
        let vectors = encode(&model, &ok)?;
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
                println!("    skipped {}: {why}", f.display());
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
    let model = a.model.load(None)?;
    let gallery = Gallery::load(&a.gallery)?;
    gallery.check_model(&model.fingerprint(), &a.gallery)?;
    anyhow::ensure!(
        !gallery.is_empty(),
        "{} has nobody enrolled: run `faces enroll` first",
        a.gallery.display()
    );
    let precision = match a.precision.as_str() {
        "f32" => Precision::F32,
        "f16" => Precision::F16,
        p => bail!("--precision must be f32 or f16, not {p:?}"),
    };
    let mut files = vec![];
    for p in &a.probes {
        let found = image_files(p)?;
        anyhow::ensure!(!found.is_empty(), "{}: no files", p.display());
        files.extend(found);
    }
    let (ok, bad) = decode(&model, &files);
    let vectors = encode(&model, &ok)?;
    let index = gallery.index(precision);
    let mut results: Vec<(String, Decision)> = vec![];
    for ((f, _), v) in ok.iter().zip(&vectors) {
        let found = index.search(v, a.top_k.max(2))?;
        let mut d = gallery.decide(&found);
        d.top.truncate(a.top_k.max(1));
        results.push((f.display().to_string(), d));
    }
    if a.out.json {
        #[derive(Serialize)]
        struct Row<'a> {
            probe: &'a str,
            #[serde(flatten)]
            decision: &'a Decision,
        }
        let rows: Vec<Row> = results
            .iter()
            .map(|(p, d)| Row {
                probe: p,
                decision: d,
            })
            .collect();
        let skipped: Vec<_> = bad
            .iter()
            .map(|(f, why)| serde_json::json!({"probe": f, "error": why}))
            .collect();
        print_json(&serde_json::json!({"results": rows, "skipped": skipped}))?;
    } else if a.out.csv {
        println!("probe,identity,distance,tau,margin,top");
        for (p, d) in &results {
            println!(
                "{},{},{:.6},{:.6},{:.6},{}",
                csv_field(p),
                csv_field(d.identity.as_deref().unwrap_or("unknown")),
                d.distance,
                d.tau,
                d.margin,
                csv_field(&top_list(d, ":", ";"))
            );
        }
    } else {
        let w = results.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
        println!(
            "{:<w$}  {:<24} {:>8} {:>8} {:>8}  top-{}",
            "probe", "identity", "distance", "tau", "margin", a.top_k
        );
        for (p, d) in &results {
            println!(
                "{p:<w$}  {:<24} {:>8.4} {:>8.4} {:>8.4}  {}",
                d.identity.as_deref().unwrap_or("unknown"),
                d.distance,
                d.tau,
                d.margin,
                top_list(d, " ", ", ")
            );
        }
    }
    for (_, why) in &bad {
        eprintln!("skipped: {why}");
    }
    anyhow::ensure!(!results.is_empty(), "no probe could be read");
    Ok(())
}

/// Reads a `image_a,image_b,same` CSV (paths relative to its folder; a header line is
/// allowed).
fn read_pairs_csv(path: &Path) -> Result<Vec<(PathBuf, PathBuf, bool)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.to_lowercase().contains("same")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let same = match f.get(2) {
            Some(&"1") | Some(&"true") => true,
            Some(&"0") | Some(&"false") => false,
            _ => bail!(
                "{} line {}: expected `image_a,image_b,same` with same 1 or 0, got {line:?}",
                path.display(),
                n + 1
            ),
        };
        out.push((dir.join(f[0]), dir.join(f[1]), same));
    }
    anyhow::ensure!(!out.is_empty(), "{}: no pairs", path.display());
    Ok(out)
}

/// tau for `pairs`: at the best accuracy, or the largest threshold whose false-accept rate
/// is within `target_far`.
fn choose(pairs: &[ScoredPair], target_far: Option<f64>, rule: &mut String) -> Result<f32> {
    let ns = pairs.iter().filter(|p| p.same).count();
    anyhow::ensure!(
        ns > 0 && ns < pairs.len(),
        "calibration needs both same-person and different-person pairs ({ns} same of {})",
        pairs.len()
    );
    Ok(match target_far {
        None => {
            *rule = "best-accuracy".into();
            best_threshold(pairs).0
        }
        Some(far) => {
            *rule = format!("far<={far}");
            roc(pairs)
                .iter()
                .filter(|p| p.far <= far && p.tau.is_finite())
                .map(|p| p.tau)
                .fold(0.0, f32::max)
        }
    })
}

fn rates(pairs: &[ScoredPair], tau: f32) -> (f64, f64) {
    let (mut fa, mut nd, mut fr, mut ns) = (0, 0, 0, 0);
    for p in pairs {
        if p.same {
            ns += 1;
            fr += usize::from(p.distance > tau);
        } else {
            nd += 1;
            fa += usize::from(p.distance <= tau);
        }
    }
    (fa as f64 / nd.max(1) as f64, fr as f64 / ns.max(1) as f64)
}

pub(crate) fn calibrate(a: &CalibrateArgs) -> Result<()> {
    use rand::SeedableRng;
    let model = a.model.load(None)?;
    let score = model.scorer();
    // (person, image) rows, and index pairs over them.
    let (pairs, per_person): (Vec<ScoredPair>, Vec<(String, Vec<ScoredPair>)>) =
        if let Some(dir) = &a.people {
            let ids = faces::data::Identities::load(dir, model.preprocess())
                .with_context(|| format!("loading {}", dir.display()))?;
            let flat = ids.flat();
            let refs: Vec<&tensor::Tensor> = flat.iter().map(|f| f.1).collect();
            let labels: Vec<usize> = flat.iter().map(|f| f.0).collect();
            let emb = crate::faces::embed_with_progress(&model, &refs)?;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
            let idx = faces::oneshot::index_pairs(&labels, 20_000, &mut rng);
            let scored = faces::oneshot::score_pairs(&emb, model.dim(), &idx, &score);
            let per: Vec<(String, Vec<ScoredPair>)> = ids
                .names
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
            let (ok, bad) = decode(&model, &files);
            // The reason names the file.
            if let Some((_, why)) = bad.first() {
                bail!("{why}");
            }
            let vectors = encode(&model, &ok)?;
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
    let mut rule = String::new();
    let tau = choose(&pairs, a.target_far, &mut rule)?;
    let curve = roc(&pairs);
    let (far, frr) = rates(&pairs, tau);
    let cal = Calibration {
        rule,
        pairs: (
            pairs.iter().filter(|p| p.same).count(),
            pairs.iter().filter(|p| !p.same).count(),
        ),
        accuracy: accuracy_at(&pairs, tau),
        far,
        frr,
        auc: auc(&curve),
    };
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
    gallery.check_model(&model.fingerprint(), &a.gallery)?;
    gallery.tau = tau;
    gallery.calibration = Some(cal.clone());
    let mut own = vec![];
    if a.per_identity {
        for (name, mine) in &per_person {
            if !gallery.identities.iter().any(|i| &i.name == name) {
                continue;
            }
            let mut r = String::new();
            if let Ok(t) = choose(mine, a.target_far, &mut r) {
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
            let g = Gallery::load(gallery)?;
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
                    &g.model[..12.min(g.model.len())]
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
            let _lock = GalleryLock::acquire(gallery)?;
            let mut g = Gallery::load(gallery)?;
            g.rename(from, to)?;
            g.save(gallery)?;
            println!("renamed {from} to {to}");
        }
    }
    Ok(())
}
