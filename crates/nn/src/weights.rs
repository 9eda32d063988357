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
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
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
