//! Import of pretrained weights from safetensors files (F32, F16 and BF16, converted to f32).

use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use tensor::Tensor;

use crate::param::ParamStore;
use crate::{Error, Result};

/// Every tensor of a safetensors file, converted to f32, in file order.
///
/// # Errors
/// [`Error::Io`], [`Error::Corrupt`] for a malformed file or a dtype other than F32/F16/BF16.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    parse_safetensors(&crate::checkpoint::read_bounded(path)?, path)
}

/// [`read_safetensors`] on the file's bytes (`path` is used in errors).
///
/// # Errors
/// As [`read_safetensors`].
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::corrupt(path, format!("not a safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::corrupt(
                    path,
                    format!("tensor {name:?} has dtype {other:?}; only F32, F16 and BF16 load"),
                ));
            }
        };
        let t = Tensor::from_vec(values, view.shape())
            .map_err(|e| Error::corrupt(path, format!("tensor {name:?}: {e}")))?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Loads every parameter of `store` from a safetensors file by name (`rename` maps a store
/// name to the file's name; use `|n| n.to_string()` when they agree).
///
/// # Errors
/// As [`read_safetensors`], plus [`Error::MissingParam`] (with the file's name) and
/// [`Error::ParamShape`]. Nothing is written unless every tensor matches.
pub fn load_safetensors_into(
    store: &mut ParamStore,
    path: &Path,
    rename: impl Fn(&str) -> String,
) -> Result<()> {
    load_safetensors_under(store, path, "", |n| rename(n))
}

/// Loads the parameters of `store` whose names start with `prefix` (a pretrained part of a
/// larger model, e.g. `backbone.`), stripping the prefix before `rename`. The others are left
/// as they are.
///
/// # Errors
/// As [`load_safetensors_into`].
pub fn load_safetensors_under(
    store: &mut ParamStore,
    path: &Path,
    prefix: &str,
    rename: impl Fn(&str) -> String,
) -> Result<()> {
    let file = read_safetensors(path)?;
    let mut staged = vec![];
    let ids: Vec<_> = store
        .ids()
        .filter(|&id| store.name(id).starts_with(prefix))
        .collect();
    for id in ids {
        let name = rename(&store.name(id)[prefix.len()..]);
        let (_, t) = file
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::MissingParam { name: name.clone() })?;
        if t.shape() != store.get(id).shape() {
            return Err(Error::ParamShape {
                name,
                expected: store.get(id).shape().to_vec(),
                got: t.shape().to_vec(),
            });
        }
        staged.push((id, t.clone()));
    }
    for (id, t) in staged {
        store.set(id, t)?;
    }
    Ok(())
}

/// Writes every tensor of `store` (weights and buffers) to a safetensors file, F32, by name,
/// atomically.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn save_safetensors(store: &ParamStore, path: &Path) -> Result<()> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = store
        .ids()
        .map(|id| {
            let t = store.get(id);
            let bytes = t.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect();
            (store.name(id).to_string(), t.shape().to_vec(), bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, s, b)| {
            let v = safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map_err(|e| Error::corrupt(path, format!("tensor {n:?}: {e}")))?;
            Ok((n.clone(), v))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::corrupt(path, format!("cannot encode: {e}")))?;
    crate::checkpoint::write_atomic(path, &bytes)
}

/// Every tensor of a TF.js weights manifest (`model-weights_manifest.json`) and the `.bin`
/// files it names (read from the manifest's folder), in manifest order and in TF's own layout
/// (filters HWIO, matrices `(in, out)`).
///
/// uint8-quantised tensors dequantise as TF.js does: `q * scale + min` in f64, rounded once
/// to f32 (int32 tensors are also rounded to the nearest integer); plain float32 tensors are
/// little-endian. Every size is checked against the bytes there are before anything is
/// allocated.
///
/// # Errors
/// [`Error::Io`] for an unreadable file; [`Error::Corrupt`] naming the file for malformed
/// JSON, an unsupported dtype, a shape whose size overflows, a `.bin` shorter or longer than
/// the manifest describes.
pub fn read_tfjs(manifest: &Path) -> Result<Vec<(String, Tensor)>> {
    let text = crate::limits::read_text(manifest).map_err(|e| Error::io(manifest, e))?;
    let dir = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    parse_tfjs(&text, manifest, &mut |name| {
        crate::checkpoint::read_bounded(&dir.join(name))
    })
}

/// [`read_tfjs`] on a manifest's text; `read_bin` returns the bytes of a weight file the
/// manifest names (a plain file name, checked here before it is asked for).
///
/// # Errors
/// As [`read_tfjs`].
pub fn parse_tfjs(
    text: &str,
    manifest: &Path,
    read_bin: &mut dyn FnMut(&str) -> Result<Vec<u8>>,
) -> Result<Vec<(String, Tensor)>> {
    #[derive(serde::Deserialize)]
    struct Group {
        paths: Vec<String>,
        weights: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        name: String,
        shape: Vec<usize>,
        dtype: String,
        quantization: Option<Quantization>,
    }
    #[derive(serde::Deserialize)]
    struct Quantization {
        dtype: String,
        scale: f64,
        min: f64,
    }
    let groups: Vec<Group> = serde_json::from_str(text)
        .map_err(|e| Error::corrupt(manifest, format!("not a TF.js weights manifest: {e}")))?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut out = vec![];
    for g in &groups {
        let mut bytes = vec![];
        for p in &g.paths {
            // Weight files sit beside their manifest: a path that leaves the folder is refused.
            if Path::new(p)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::corrupt(
                    manifest,
                    format!("weight path {p:?} must be a file name in the manifest's folder"),
                ));
            }
            bytes.extend(read_bin(p)?);
            if bytes.len() as u64 > crate::limits::max_input_bytes() {
                return Err(Error::corrupt(
                    manifest,
                    crate::limits::over_limit("one group's weight files"),
                ));
            }
        }
        let bin = dir.join(g.paths.first().map(String::as_str).unwrap_or("?"));
        let mut at = 0usize;
        for w in &g.weights {
            let n = w
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| {
                    Error::corrupt(
                        manifest,
                        format!("tensor {:?}: shape {:?} is too large", w.name, w.shape),
                    )
                })?;
            let rest = &bytes[at..];
            let short = || {
                Error::corrupt(
                    &bin,
                    format!(
                        "ends before tensor {:?} ({} bytes left, shape {:?}): truncated?",
                        w.name,
                        rest.len(),
                        w.shape
                    ),
                )
            };
            let (values, size): (Vec<f32>, usize) = match (&w.dtype[..], &w.quantization) {
                (d @ ("float32" | "int32"), Some(q)) if q.dtype == "uint8" => {
                    let raw = rest.get(..n).ok_or_else(short)?;
                    let round = d == "int32";
                    let v = raw
                        .iter()
                        .map(|&b| {
                            let v = f64::from(b) * q.scale + q.min;
                            (if round { v.round() } else { v }) as f32
                        })
                        .collect();
                    (v, n)
                }
                ("float32", None) => {
                    let len = n.checked_mul(4).ok_or_else(short)?;
                    let raw = rest.get(..len).ok_or_else(short)?;
                    let v = raw
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    (v, len)
                }
                (d, q) => {
                    return Err(Error::corrupt(
                        manifest,
                        format!(
                            "tensor {:?}: dtype {d} with quantisation {:?} is not supported",
                            w.name,
                            q.as_ref().map(|q| &q.dtype)
                        ),
                    ));
                }
            };
            at += size;
            let t = Tensor::from_vec(values, &w.shape)
                .map_err(|e| Error::corrupt(manifest, format!("{}: {e}", w.name)))?;
            out.push((w.name.clone(), t));
        }
        if at != bytes.len() {
            return Err(Error::corrupt(
                &bin,
                format!(
                    "{} bytes of weights but the manifest describes {at}",
                    bytes.len()
                ),
            ));
        }
    }
    Ok(out)
}
