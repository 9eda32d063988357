//! The fuzz targets' bodies: each takes arbitrary bytes and feeds them to one reader the way
//! the project reads a user's file. A reader may refuse the bytes (an error naming the
//! problem); it may not panic, abort or allocate beyond the input limit. `fuzz/` wraps each
//! function in a libFuzzer target (`cargo fuzz run NAME`); `tests/replay.rs` runs every seed
//! and every committed crash input through them on each `cargo test`, so a regression is
//! caught without the fuzzer.
#![warn(missing_docs)]

use std::path::Path;

/// A target's body: arbitrary bytes in, nothing out (refusing them is fine; panicking is not).
pub type Target = fn(&[u8]);

/// Every target, by name (the `fuzz/fuzz_targets/NAME.rs` files and the corpus folders).
pub const TARGETS: &[(&str, Target)] = &[
    ("image", image),
    ("npy", npy),
    ("npz", npz),
    ("safetensors", safetensors),
    ("tfjs", tfjs),
    ("checkpoint", checkpoint),
    ("model_spec", model_spec),
    ("gallery", gallery),
    ("wfdb_header", wfdb_header),
    ("wfdb_record", wfdb_record),
    ("wfdb_annotations", wfdb_annotations),
    ("nifti", nifti),
    ("lfw_protocol", lfw_protocol),
    ("omniglot", omniglot),
    ("pairs_csv", pairs_csv),
    ("cli_sizes", cli_sizes),
];

/// The larger inputs are cut at the first occurrence of this byte sequence into two files
/// (a header and its data), so one fuzz input can describe both.
const SPLIT: &[u8] = b"\n--8<--\n";

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(SPLIT.len()).position(|w| w == SPLIT) {
        Some(at) => (&data[..at], &data[at + SPLIT.len()..]),
        None => (data, &[]),
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// An image in any format, through the project's decoder (EXIF orientation, pixel limit);
/// a decoded image is then preprocessed as a face model's input would be.
pub fn image(data: &[u8]) {
    if let Ok(img) = nn::data::decode_image(data, 4_000_000) {
        let pre = faces::data::Preprocess::grey(28, 23);
        let _ = pre.apply(img, Path::new("fuzz.img"));
    }
}

/// One `.npy` array, converted to f32 as every loader does.
pub fn npy(data: &[u8]) {
    if let Ok(a) = nn::npy::parse_npy(data, Path::new("fuzz.npy")) {
        let _ = a.to_f32();
    }
}

/// An `.npz` archive; its arrays are converted to f32.
pub fn npz(data: &[u8]) {
    if let Ok(arrays) = nn::npy::parse_npz(std::io::Cursor::new(data), Path::new("fuzz.npz")) {
        for (_, a) in &arrays {
            let _ = a.to_f32();
        }
    }
}

/// A safetensors file.
pub fn safetensors(data: &[u8]) {
    let _ = nn::weights::parse_safetensors(data, Path::new("fuzz.safetensors"));
}

/// A TF.js manifest (before the split) and the bytes of every weight file it names (after).
pub fn tfjs(data: &[u8]) {
    let (manifest, bin) = split(data);
    let _ = nn::weights::parse_tfjs(
        &text(manifest),
        Path::new("fuzz/manifest.json"),
        &mut |_| Ok(bin.to_vec()),
    );
}

/// `payload` in a container with a valid header and checksum, so that the fuzzer's mutations
/// reach the decoder behind the CRC instead of stopping at it.
fn with_valid_header(magic: &[u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    bytes.extend(version.to_le_bytes());
    bytes.extend((payload.len() as u64).to_le_bytes());
    bytes.extend(crc32(payload).to_le_bytes());
    bytes.extend(payload);
    bytes
}

/// CRC-32 (IEEE), bit by bit: the fuzz harness needs it without another dependency.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The bytes as a checkpoint file, and as the payload of one (past the checksum); a decoded
/// checkpoint is also opened as a face model.
pub fn checkpoint(data: &[u8]) {
    use nn::checkpoint::{Checkpoint, FORMAT_VERSION, MAGIC, decode_container};
    let path = Path::new("fuzz.ckpt");
    for bytes in [
        data.to_vec(),
        with_valid_header(MAGIC, FORMAT_VERSION, data),
    ] {
        if let Ok(ck) =
            decode_container::<Checkpoint>(&bytes, path, MAGIC, FORMAT_VERSION, "checkpoint")
        {
            let _ = faces::model::FaceModel::from_checkpoint(&ck, path);
        }
    }
}

/// A face model file's spec (its JSON), with the weights of a small valid model: the sizes
/// in the spec must not build more than the file holds.
pub fn model_spec(data: &[u8]) {
    let mut ck = small_model_checkpoint().clone();
    ck.config = text(data);
    if let Ok(m) = faces::model::FaceModel::from_checkpoint(&ck, Path::new("fuzz.model")) {
        // A spec that loads must also embed an image of its own input size.
        let (h, w) = m.spec.preprocess.size;
        let c = m.spec.preprocess.channels;
        let img = tensor::Tensor::zeros(&[c, h as usize, w as usize]);
        let _ = m.embed(&[&img], 1);
    }
}

/// The spec of the small face model behind the `model_spec` target and the model seeds: grey
/// 16 x 16 input, two conv blocks, a 4-D embedding over a 2 x 2 pooling grid.
pub fn small_model_spec() -> faces::model::FaceModelSpec {
    faces::model::FaceModelSpec {
        preprocess: faces::data::Preprocess::grey(16, 16),
        embedding: faces::model::EmbeddingConfig {
            in_channels: 1,
            backbone: faces::model::Backbone::Conv { widths: vec![2, 4] },
            dim: 4,
            pool_grid: 2,
            non_negative: false,
        },
        head: None,
        tau: 0.5,
        trained_with: "fuzz seed".into(),
        flip_average: true,
        face_stream: None,
    }
}

/// The checkpoint of a model of [`small_model_spec`] (made once per process).
pub fn small_model_checkpoint() -> &'static nn::checkpoint::Checkpoint {
    static CK: std::sync::OnceLock<nn::checkpoint::Checkpoint> = std::sync::OnceLock::new();
    CK.get_or_init(|| {
        let m = faces::model::FaceModel::new(small_model_spec(), 0, 0.0).expect("a valid spec");
        let dir = std::env::temp_dir().join(format!("fuzz-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let path = dir.join("small.model");
        m.save(&path).expect("saved");
        let ck = nn::checkpoint::load(&path).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        ck
    })
}

/// The bytes as a gallery file, and as the payload of one (past the checksum); a loaded
/// gallery is searched.
pub fn gallery(data: &[u8]) {
    use faces::gallery::{FORMAT_VERSION, Gallery, MAGIC, Precision};
    for bytes in [
        data.to_vec(),
        with_valid_header(MAGIC, FORMAT_VERSION, data),
    ] {
        if let Ok(g) = Gallery::from_bytes(&bytes, Path::new("fuzz.gallery")) {
            let index = g.index(Precision::F32);
            let probe = vec![0.5f32; g.dim];
            if let Ok(found) = index.search(&probe, 3) {
                let _ = g.decide(&found);
            }
        }
    }
}

/// A WFDB header.
pub fn wfdb_header(data: &[u8]) {
    let _ = signals::wfdb::parse_header(&text(data), Path::new("fuzz.hea"));
}

/// A WFDB header (before the split) and its format-212 signal file (after), then beat
/// windows around annotations at every 97th sample.
pub fn wfdb_record(data: &[u8]) {
    let (hea, dat) = split(data);
    let Ok(header) = signals::wfdb::parse_header(&text(hea), Path::new("fuzz.hea")) else {
        return;
    };
    if let Ok(record) = signals::wfdb::record_from(header, dat, Path::new("fuzz.dat")) {
        let len = record.signals.first().map_or(0, Vec::len) as u64;
        let ann: Vec<signals::wfdb::Annotation> = (0..len)
            .step_by(97)
            .map(|s| signals::wfdb::Annotation {
                sample: s,
                symbol: "N".into(),
            })
            .collect();
        let _ = signals::ecg::beats(&record, &ann, 0, 360.0, 64);
    }
}

/// MIT-format annotations.
pub fn wfdb_annotations(data: &[u8]) {
    let _ = signals::wfdb::parse_annotations(data, Path::new("fuzz.atr"));
}

/// A NIfTI-1 volume, gzip-compressed or not.
pub fn nifti(data: &[u8]) {
    let _ = signals::nifti::parse_nifti_file(data.to_vec(), Path::new("fuzz.nii"));
}

/// An LFW pairs file and the same text as a people file.
pub fn lfw_protocol(data: &[u8]) {
    let t = text(data);
    let _ = faces::data::parse_pairs(&t, Path::new("pairs.txt"));
    let _ = faces::data::parse_people(&t, Path::new("people.txt"));
}

/// An Omniglot `.npz` release (its `images` array as identities at 28 px) and a one-shot
/// run's `class_labels.txt` (the same bytes as text).
pub fn omniglot(data: &[u8]) {
    let path = Path::new("fuzz.npz");
    if let Ok(mut arrays) = nn::npy::parse_npz(std::io::Cursor::new(data), path)
        && let Ok(images) = nn::npy::take_array(&mut arrays, "images", path)
    {
        let _ = faces::data::omniglot_identities(&images, path, 28);
    }
    let _ = faces::data::parse_class_labels(&text(data), Path::new("class_labels.txt"));
}

/// A labelled pairs CSV.
pub fn pairs_csv(data: &[u8]) {
    let _ = faces::data::parse_pairs_csv(&text(data), Path::new("pairs.csv"));
}

/// The command-line values that become sizes: `--size HxW` and `--crop X,Y,W,H` (applied to
/// a small image, as a crop box from a model file or a flag would be).
pub fn cli_sizes(data: &[u8]) {
    let t = text(data);
    let _ = nn::data::parse_hw(&t, 4096);
    if let Ok(crop) = faces::data::CropBox::parse(&t) {
        let mut pre = faces::data::Preprocess::grey(8, 8);
        pre.crop = Some(crop);
        let img = image::DynamicImage::new_luma8(40, 30);
        let _ = pre.apply(img, Path::new("fuzz.pgm"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_harness_crc_is_the_ieee_one() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
    }
}
