//! `cargo xtask visualize`: what the units of a CNN respond to (Zeiler & Fergus), for the
//! bundled ImageNet SqueezeNet on a folder of photos, or a face model (SqueezeNet body) on faces:
//! first-layer filters, the top-9 patches of chosen units per layer with their deconvnet
//! projections, occlusion sensitivity maps, and an HTML page that puts them side by side.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use autograd::{Graph, ReluRule};
use image::RgbImage;
use nn::inspect::{
    Layered, grid, heat_overlay, influence_box, occlusion_map, project, to_tile, top_activations,
};
use nn::models::squeezenet::{self, SqueezeNet};
use nn::{Ctx, Mode, Module, ParamStore};
use tensor::Tensor;

#[derive(clap::Args, Debug)]
pub(crate) struct VisualizeArgs {
    /// `squeezenet` (the bundled ImageNet network) or the path of a face model with a
    /// SqueezeNet body (`faces train` / `demo` write them).
    #[arg(long, default_value = "squeezenet")]
    model: String,
    /// Folder of images (default: the bundled photos and paintings).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Layers to look at, by name.
    #[arg(long, default_value = "relu1,fire3,fire5,fire7,fire9")]
    layers: String,
    /// Units shown per layer (those with the strongest activations over the images).
    #[arg(long, default_value_t = 6)]
    units: usize,
    /// Longest side the photos are resized to (SqueezeNet; face models use their own size).
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Output folder (PNGs and index.html).
    #[arg(long, default_value = "out/visualize")]
    out: PathBuf,
}

/// Something done with one image before its occlusion map.
type ImageHook = dyn Fn(&Tensor) -> nn::Result<()>;
/// The number occlusion watches for one image.
type ImageScore = dyn Fn(&Tensor) -> nn::Result<f32>;

/// The network seen layer by layer, its weights, how to score an image for occlusion, and the
/// name of the first conv's weight.
struct Subject {
    net: Box<dyn Layered>,
    /// Called with each image before its occlusion map (the face model keeps its embedding).
    prepare: Box<ImageHook>,
    score: Box<ImageScore>,
    store: ParamStore,
    first_conv: String,
    what_occlusion_shows: String,
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if nn::train::is_image_file(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("{} holds no image", dir.display());
    }
    Ok(out)
}

fn squeezenet_subject() -> Result<Subject> {
    let (net, store) = SqueezeNet::pretrained(&squeezenet::bundled_weights())?;
    let net = std::rc::Rc::new(net);
    let (scorer, s2) = (net.clone(), store.clone());
    // Occlusion: the score of the class the network gives the whole image.
    let score = move |t: &Tensor| -> nn::Result<f32> {
        let g = Graph::no_grad();
        let cx = Ctx::new(&g, &s2, Mode::Eval, 0);
        let y = scorer
            .forward(&cx, &g.constant(t.unsqueeze(0)?))?
            .value()
            .to_vec();
        Ok(y.iter().copied().fold(f32::MIN, f32::max))
    };
    Ok(Subject {
        net: Box::new(net),
        prepare: Box::new(|_| Ok(())),
        score: Box::new(score),
        store,
        first_conv: "features.0.weight".into(),
        what_occlusion_shows:
            "the drop in the top ImageNet class score when a grey square hides that part".into(),
    })
}

fn face_subject(path: &Path) -> Result<(Subject, faces::data::Preprocess)> {
    let model = faces::model::FaceModel::load(path)
        .with_context(|| format!("loading {}", path.display()))?;
    let pre = model.spec.preprocess.clone();
    let model = std::rc::Rc::new(model);
    // Occlusion: how far the embedding moves from the whole image's when a square is hidden
    // (the score is minus that distance, so the map holds the distance).
    let reference: std::rc::Rc<std::cell::RefCell<Vec<f32>>> = Default::default();
    let (m2, r2) = (model.clone(), reference.clone());
    let score = move |t: &Tensor| -> nn::Result<f32> {
        let e = m2.embed(&[t], 1)?;
        Ok(-faces::model::squared_l2(&r2.borrow(), &e))
    };
    let m3 = model.clone();
    let prepare = move |t: &Tensor| -> nn::Result<()> {
        *reference.borrow_mut() = m3.embed(&[t], 1)?;
        Ok(())
    };
    let store = model.store.clone();
    Ok((
        Subject {
            net: Box::new(model),
            prepare: Box::new(prepare),
            score: Box::new(score),
            store,
            first_conv: "backbone.features.0.weight".into(),
            what_occlusion_shows: "how far the face embedding moves (squared distance) when a grey square hides that part".into(),
        },
        pre,
    ))
}

pub(crate) fn visualize(a: &VisualizeArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = match &a.images {
        Some(d) => image_files(d)?,
        None => {
            let mut f = image_files(&root.join("crates/nn/assets/images"))?;
            f.extend(image_files(&root.join("crates/style/assets"))?);
            f
        }
    };
    let is_face = a.model != "squeezenet";
    let (subject, face_pre) = if is_face {
        let (s, p) = face_subject(Path::new(&a.model))?;
        (s, Some(p))
    } else {
        (squeezenet_subject()?, None)
    };
    // Network inputs, and the same pictures in [0, 1] RGB for display.
    let mut inputs = vec![];
    let mut shown = vec![];
    for f in &files {
        match &face_pre {
            Some(pre) => {
                let t = pre.load(f)?;
                shown.push(t.affine(0.25, 0.5));
                inputs.push(t);
            }
            None => {
                let img = nn::data::load_rgb(f)?;
                let s = a.size as f64 / img.width().max(img.height()) as f64;
                let (w, h) = (
                    (img.width() as f64 * s).round() as u32,
                    (img.height() as f64 * s).round() as u32,
                );
                let img = nn::data::resize_rgb(&img, w, h);
                shown.push(nn::data::rgb_to_tensor(&img, [0.0; 3], [1.0; 3]));
                inputs.push(nn::data::rgb_to_tensor(
                    &img,
                    nn::data::IMAGENET_MEAN,
                    nn::data::IMAGENET_STD,
                ));
            }
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut html = format!(
        "<html><head><meta charset=\"utf-8\"><title>Inside {}</title></head><body style=\"font-family:sans-serif\">\n<h1>Inside {}</h1>\n<p>{} images. Each tile is normalised on its own.</p>\n",
        a.model,
        a.model,
        files.len()
    );
    // 1. First-layer filters.
    let id = subject
        .store
        .id(&subject.first_conv)
        .with_context(|| format!("the model has no {}", subject.first_conv))?;
    let w = subject.store.get(id);
    let tiles: Vec<(String, RgbImage)> = (0..w.shape()[0])
        .map(|o| {
            Ok((
                o.to_string(),
                to_tile(&w.narrow(0, o, 1)?.reshape(&w.shape()[1..])?, 8),
            ))
        })
        .collect::<Result<_>>()?;
    let rows: Vec<(String, Vec<(String, RgbImage)>)> = tiles
        .chunks(16)
        .enumerate()
        .map(|(r, c)| (format!("{}-{}", r * 16, r * 16 + c.len() - 1), c.to_vec()))
        .collect();
    grid(&rows, 40).save(a.out.join("filters.png"))?;
    html.push_str("<h2>First-layer filters</h2><img src=\"filters.png\">\n");
    // 2. Per layer: top-9 patches and their deconvnet projections for the strongest units.
    for name in a.layers.split(',').map(str::trim) {
        let layer = squeezenet::feature_index(name).with_context(|| {
            format!(
                "no layer {name:?}; layers: {}",
                squeezenet::FEATURE_NAMES.join(", ")
            )
        })?;
        let channels = {
            let g = Graph::no_grad();
            let cx = Ctx::new(&g, &subject.store, Mode::Eval, 0);
            subject
                .net
                .layer(&cx, &g.constant(inputs[0].unsqueeze(0)?), layer)?
                .shape()[1]
        };
        let all: Vec<usize> = (0..channels).collect();
        let hits = top_activations(
            subject.net.as_ref(),
            &subject.store,
            &inputs,
            layer,
            &all,
            9,
        )?;
        let mut order: Vec<usize> = (0..channels).collect();
        order.sort_by(|&x, &y| hits[y][0].value.total_cmp(&hits[x][0].value));
        let mut patch_rows = vec![];
        let mut deconv_rows = vec![];
        for &u in order.iter().take(a.units) {
            let (mut patches, mut projections) = (vec![], vec![]);
            for h in &hits[u] {
                let Some((y0, x0, y1, x1)) = influence_box(
                    subject.net.as_ref(),
                    &subject.store,
                    &inputs[h.image],
                    layer,
                    u,
                    h.at,
                )?
                else {
                    continue;
                };
                let crop = |t: &Tensor| -> Result<Tensor> {
                    Ok(t.narrow(1, y0, y1 - y0)?
                        .narrow(2, x0, x1 - x0)?
                        .contiguous())
                };
                patches.push((
                    format!("{:.1}", h.value),
                    to_tile(&crop(&shown[h.image])?, 1),
                ));
                let p = project(
                    subject.net.as_ref(),
                    &subject.store,
                    &inputs[h.image],
                    layer,
                    u,
                    h.at,
                    ReluRule::Deconvnet,
                )?;
                projections.push((String::new(), to_tile(&crop(&p)?, 1)));
            }
            patch_rows.push((format!("unit {u}"), patches));
            deconv_rows.push((format!("unit {u}"), projections));
        }
        let (pf, df) = (format!("{name}_patches.png"), format!("{name}_deconv.png"));
        grid(&patch_rows, 64).save(a.out.join(&pf))?;
        grid(&deconv_rows, 64).save(a.out.join(&df))?;
        html.push_str(&format!(
            "<h2>{name} (features.{layer}, {channels} units)</h2><p>The {} units with the strongest activations; per unit the 9 images that excite it most (the crop is the region that influences the unit), and beside it the deconvnet projection of that activation.</p><table><tr><td><img src=\"{pf}\"></td><td><img src=\"{df}\"></td></tr></table>\n",
            a.units.min(channels)
        ));
        eprintln!(
            "{name}: {} units ({:.1} s)",
            a.units.min(channels),
            t0.elapsed().as_secs_f64()
        );
    }
    // 3. Occlusion sensitivity per image.
    let mut occ_tiles = vec![];
    for (i, x) in inputs.iter().enumerate().take(8) {
        let (h, w) = (x.shape()[1], x.shape()[2]);
        let patch = (h.min(w) / 6).max(4);
        (subject.prepare)(x)?;
        // 0 is the mean grey in both normalisations (ImageNet's and the faces' 4 (v - 0.5)).
        let (dims, map) = occlusion_map(x, patch, (patch / 2).max(1), 0.0, subject.score.as_ref())?;
        let values: Vec<f32> = map.iter().map(|v| v.max(0.0)).collect();
        occ_tiles.push((
            files[i]
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            heat_overlay(&to_tile(&shown[i], 1), dims, &values),
        ));
    }
    grid(&[("occlusion".into(), occ_tiles)], 160).save(a.out.join("occlusion.png"))?;
    html.push_str(&format!(
        "<h2>Occlusion sensitivity</h2><p>Red: {}.</p><img src=\"occlusion.png\">\n</body></html>\n",
        subject.what_occlusion_shows
    ));
    nn::checkpoint::write_atomic(&a.out.join("index.html"), html.as_bytes())?;
    eprintln!(
        "wrote {}/index.html ({:.1} s)",
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
