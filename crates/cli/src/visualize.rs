//! `cnn visualize`: what the units of a CNN respond to (Zeiler & Fergus), for the
//! bundled ImageNet SqueezeNet on a folder of photos, a face model (SqueezeNet body) or the
//! pretrained face ResNet-29 on faces:
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
pub struct VisualizeArgs {
    /// `squeezenet` (the bundled ImageNet network), `pretrained` (the bundled face ResNet-29)
    /// or the path of a face model with a SqueezeNet body (`faces train` / `demo` write them).
    #[arg(long, default_value = "squeezenet")]
    model: String,
    /// Folder of images (default: the bundled photos and paintings; for `pretrained` the first
    /// photo of each bundled ORL person, cut to the face chip the network expects). With
    /// `pretrained`, each image is taken as a face crop.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Layers to look at, by name (default: relu1,fire3,fire5,fire7,fire9 for SqueezeNet
    /// bodies; conv32_down,conv32_3,conv64_3,conv128_2,conv256_2 for the face ResNet-29).
    #[arg(long)]
    layers: Option<String>,
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

/// The network seen layer by layer, its weights, how to score an image for occlusion, its
/// first layer's filters and the names of its layers.
struct Subject {
    net: Box<dyn Layered>,
    /// Called with each image before its occlusion map (the face models keep its embedding).
    prepare: Box<ImageHook>,
    score: Box<ImageScore>,
    store: ParamStore,
    filters: Tensor,
    /// Layer names, by index.
    layers: &'static [&'static str],
    /// How the page names layer `l` (`features.` + l for SqueezeNet).
    layer_prefix: &'static str,
    default_layers: &'static str,
    what_occlusion_shows: String,
}

/// The first conv's weight (named `first_conv` in `store`), whose filters the page shows.
fn first_filters(store: &ParamStore, first_conv: &str) -> Result<Tensor> {
    let id = store
        .id(first_conv)
        .with_context(|| format!("the model has no {first_conv}"))?;
    Ok(store.get(id).clone())
}

const SQUEEZENET_DEFAULT_LAYERS: &str = "relu1,fire3,fire5,fire7,fire9";

/// The pretrained face ResNet-29; occlusion is how far its (L2-normalised) encoding moves.
fn resnet_subject() -> Result<Subject> {
    let net = std::rc::Rc::new(faces::resnet29::FaceResNet29::bundled()?);
    let encode = |net: &faces::resnet29::FaceResNet29, t: &Tensor| -> nn::Result<Vec<f32>> {
        let e = net.forward(&t.unsqueeze(0)?)?.to_vec();
        let n = e.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        Ok(e.iter().map(|v| v / n).collect())
    };
    let reference: std::rc::Rc<std::cell::RefCell<Vec<f32>>> = Default::default();
    let (n2, r2) = (net.clone(), reference.clone());
    let score = move |t: &Tensor| -> nn::Result<f32> {
        Ok(-faces::model::squared_l2(&r2.borrow(), &encode(&n2, t)?))
    };
    let n3 = net.clone();
    let prepare = move |t: &Tensor| -> nn::Result<()> {
        *reference.borrow_mut() = encode(&n3, t)?;
        Ok(())
    };
    Ok(Subject {
        filters: net.first_filters().clone(),
        net: Box::new(net),
        prepare: Box::new(prepare),
        score: Box::new(score),
        store: ParamStore::default(),
        layers: &faces::resnet29::STAGES,
        layer_prefix: "stage ",
        default_layers: "conv32_down,conv32_3,conv64_3,conv128_2,conv256_2",
        what_occlusion_shows:
            "how far the face encoding moves (squared distance, unit-length encodings) when a square of the mean colour hides that part".into(),
    })
}

/// A short name of image `i` for the page: its file name without extension, with its folder
/// in front when another image has the same name (ORL's `s1/1.pgm`, `s2/1.pgm`).
fn image_label(files: &[PathBuf], i: usize) -> String {
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let own = stem(&files[i]);
    if files.iter().filter(|f| stem(f) == own).count() > 1 {
        let folder = files[i]
            .parent()
            .and_then(|d| d.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{folder}/{own}")
    } else {
        own
    }
}

/// How image files become network inputs.
enum Input {
    /// RGB at --size, ImageNet-normalised (SqueezeNet).
    ImageNet,
    /// A face model's own preprocessing.
    Face(faces::data::Preprocess),
    /// Grey ORL faces cut to the face ResNet's chip (`resnet29::ORL_BOX`).
    Chip(faces::data::Preprocess),
}

/// The images under `dir` (the one listing rule of every command), none being an error.
fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let out: Vec<PathBuf> = nn::data::image_files(dir)?
        .into_iter()
        .filter(|p| nn::train::is_image_file(p))
        .collect();
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
        filters: first_filters(&store, "features.0.weight")?,
        net: Box::new(net),
        prepare: Box::new(|_| Ok(())),
        score: Box::new(score),
        store,
        layers: &squeezenet::FEATURE_NAMES,
        layer_prefix: "features.",
        default_layers: SQUEEZENET_DEFAULT_LAYERS,
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
            filters: first_filters(&store, "backbone.features.0.weight")?,
            net: Box::new(model),
            prepare: Box::new(prepare),
            score: Box::new(score),
            store,
            layers: &squeezenet::FEATURE_NAMES,
            layer_prefix: "features.",
            default_layers: SQUEEZENET_DEFAULT_LAYERS,
            what_occlusion_shows: "how far the face embedding moves (squared distance) when a grey square hides that part".into(),
        },
        pre,
    ))
}

pub(crate) fn visualize(a: &VisualizeArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pretrained = a.model == "pretrained";
    let files = match &a.images {
        Some(d) => images_in(d)?,
        None if pretrained => (1..=40)
            .map(|s| root.join(format!("crates/faces/assets/orl/s{s}/1.pgm")))
            .collect(),
        None => {
            let mut f = images_in(&root.join("crates/nn/assets/images"))?;
            f.extend(images_in(&root.join("crates/style/assets"))?);
            f
        }
    };
    let (subject, input) = match a.model.as_str() {
        "squeezenet" => (squeezenet_subject()?, Input::ImageNet),
        "pretrained" => (
            resnet_subject()?,
            match &a.images {
                // The bundled ORL faces, cut to the chip the network expects.
                None => Input::Chip(faces::data::Preprocess::grey(112, 92)),
                Some(_) => Input::Face(faces::resnet29::preprocess(None)),
            },
        ),
        path => {
            let (s, p) = face_subject(Path::new(path))?;
            (s, Input::Face(p))
        }
    };
    // Every layer name is checked before any work is done or any file written.
    let layers = a
        .layers
        .as_deref()
        .unwrap_or(subject.default_layers)
        .split(',')
        .map(str::trim)
        .map(|name| {
            let by_index = name
                .strip_prefix(subject.layer_prefix)
                .unwrap_or(name)
                .parse::<usize>()
                .ok()
                .filter(|&i| i < subject.layers.len());
            subject
                .layers
                .iter()
                .position(|n| *n == name)
                .or(by_index)
                .map(|l| (name, l))
                .with_context(|| {
                    format!("no layer {name:?}; layers: {}", subject.layers.join(", "))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    // The folder is created only once the request is known to be valid.
    crate::args::output_dir(&a.out, "--out")?;
    // Network inputs, and the same pictures in [0, 1] RGB for display.
    let mut inputs = vec![];
    let mut shown = vec![];
    for f in &files {
        match &input {
            Input::Face(pre) => {
                let t = pre.load(f)?;
                shown.push(pre.to_pixels(&t).affine(1.0 / 255.0, 0.0));
                inputs.push(t);
            }
            Input::Chip(pre) => {
                let pixels = pre.to_pixels(&pre.load(f)?);
                let t = faces::resnet29::chip(&pixels, faces::resnet29::ORL_BOX)?;
                shown.push(
                    faces::resnet29::preprocess(None)
                        .to_pixels(&t)
                        .affine(1.0 / 255.0, 0.0),
                );
                inputs.push(t);
            }
            Input::ImageNet => {
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
    let w = &subject.filters;
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
    for (name, layer) in layers {
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
            "<h2>{name} ({}{layer}, {channels} units)</h2><p>The {} units with the strongest activations; per unit the 9 images that excite it most (the crop is the region that influences the unit), and beside it the deconvnet projection of that activation.</p><table><tr><td><img src=\"{pf}\"></td><td><img src=\"{df}\"></td></tr></table>\n",
            subject.layer_prefix,
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
        // 0 is the mean colour in every normalisation here (ImageNet's, the faces' 4 (v - 0.5),
        // the face ResNet's (p - mean) / 255).
        let (dims, map) = occlusion_map(x, patch, (patch / 2).max(1), 0.0, subject.score.as_ref())?;
        let values: Vec<f32> = map.iter().map(|v| v.max(0.0)).collect();
        occ_tiles.push((
            image_label(&files, i),
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
