//! Checkpoints: configuration + named tensors + optimizer state + step, in a versioned,
//! checksummed file written atomically. Only this module knows serde and bincode.
//!
//! Layout: `magic (8 bytes) | version (u32 LE) | payload length (u64 LE) | CRC-32 of the
//! payload (u32 LE) | payload (bincode of `Body`)`. Loading checks each field in that order, so
//! a wrong file, a newer version, a truncated file and a flipped byte each get their own error.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tensor::Tensor;

use crate::optim::OptimState;
use crate::param::{ParamKind, ParamStore};
use crate::{Error, Result};

/// The first bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"CNNCKPT\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4;

/// One stored tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    /// Dotted name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
    /// True for buffers (running statistics).
    pub buffer: bool,
}

/// Everything a training run needs to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The model / run configuration (any text, typically JSON), checked by the caller.
    pub config: String,
    /// Optimizer steps taken.
    pub step: u64,
    /// Parameters and buffers.
    pub params: Vec<NamedTensor>,
    /// Optimizer state.
    pub optimizer: Option<OptimState>,
    /// Free-form metadata (epoch, metrics, RNG positions, ...).
    pub metadata: Vec<(String, String)>,
}

impl Checkpoint {
    /// A checkpoint of every tensor in `store`.
    pub fn from_store(
        store: &ParamStore,
        config: &str,
        step: u64,
        optimizer: Option<OptimState>,
    ) -> Checkpoint {
        let params = store
            .ids()
            .map(|id| NamedTensor {
                name: store.name(id).to_string(),
                shape: store.get(id).shape().to_vec(),
                data: store.get(id).to_vec(),
                buffer: store.kind(id) == ParamKind::Buffer,
            })
            .collect();
        Checkpoint {
            config: config.to_string(),
            step,
            params,
            optimizer,
            metadata: vec![],
        }
    }

    /// Writes every stored tensor of the checkpoint into `store`, by name.
    ///
    /// # Errors
    /// [`Error::MissingParam`] for a model tensor the file lacks, [`Error::ParamShape`] for a
    /// shape mismatch, [`Error::InvalidArgument`] for a file tensor the model does not have.
    /// Nothing is written unless everything matches.
    pub fn apply_to(&self, store: &mut ParamStore) -> Result<()> {
        let mut staged = Vec::with_capacity(self.params.len());
        for id in store.ids() {
            let name = store.name(id);
            let t =
                self.params
                    .iter()
                    .find(|t| t.name == name)
                    .ok_or_else(|| Error::MissingParam {
                        name: name.to_string(),
                    })?;
            if t.shape != store.get(id).shape() {
                return Err(Error::ParamShape {
                    name: name.to_string(),
                    expected: store.get(id).shape().to_vec(),
                    got: t.shape.clone(),
                });
            }
            staged.push((id, Tensor::from_vec(t.data.clone(), &t.shape)?));
        }
        if let Some(extra) = self.params.iter().find(|t| store.id(&t.name).is_none()) {
            return Err(Error::arg(
                "checkpoint",
                format!(
                    "the file has parameter {:?} that the model does not",
                    extra.name
                ),
            ));
        }
        for (id, t) in staged {
            store.set(id, t)?;
        }
        Ok(())
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `ckpt` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// then renamed over `path`. A crash at any point leaves either the old file or the new one.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    save_container(path, MAGIC, FORMAT_VERSION, ckpt)
}

/// Writes any serialisable value in this module's container (`magic | version | length |
/// CRC-32 | bincode payload`), atomically. Other kept files (galleries) use it with their own
/// magic and version.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn save_container<T: Serialize>(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    value: &T,
) -> Result<()> {
    let bytes = encode_container(magic, version, value)
        .map_err(|e| Error::corrupt(path, format!("cannot encode: {e}")))?;
    write_atomic(path, &bytes)
}

/// The bytes [`save_container`] writes (magic, version, length, CRC-32, bincode payload).
///
/// # Errors
/// A value bincode cannot encode (the reason).
pub fn encode_container<T: Serialize>(
    magic: &[u8; 8],
    version: u32,
    value: &T,
) -> std::result::Result<Vec<u8>, String> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Writes bytes to `path` through a temporary file, fsync and rename. A symbolic link at
/// `path` is written through (its target is replaced, the link stays). Temporary files that an
/// earlier writer of the same file left behind when it was killed are removed.
///
/// # Errors
/// [`Error::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let path = &resolve_links(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::arg("save", format!("{} is not a file path", path.display())))?;
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let tmp: PathBuf = dir.join(format!("{prefix}{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    remove_left_temporaries(dir, &prefix);
    Ok(())
}

/// `path` with symbolic links followed to the file they name (which may not exist yet), so an
/// atomic rename replaces the target rather than the link.
///
/// # Errors
/// An unreadable link; more than 40 links in a row (a loop).
pub fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(Error::arg(
        "save",
        format!("{}: too many levels of symbolic links", path.display()),
    ))
}

/// Removes `dir/{prefix}{pid}` files whose writer process no longer exists (Linux: no
/// `/proc/{pid}`); best effort, never an error.
fn remove_left_temporaries(dir: &Path, prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A whole file's bytes, refused (naming the file and the limit) when the file is larger than
/// [`crate::limits::max_input_bytes`]; see [`crate::limits::read_file`].
///
/// # Errors
/// [`Error::Io`], also for a file above the limit.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    crate::limits::read_file(path).map_err(|e| Error::io(path, e))
}

/// Decodes a payload with bincode's size limit set from the payload's own length: a length
/// field inside (a string's, a vector's) can then claim at most about 16 times the payload's
/// bytes (varint integers decode to 8 bytes each), never more than
/// [`crate::limits::max_input_bytes`], and is refused before it is allocated. Without a limit,
/// a valid checksum over a payload whose first string claims 2^61 bytes aborts the process.
fn decode_bounded<T: serde::de::DeserializeOwned>(
    payload: &[u8],
) -> std::result::Result<(T, usize), bincode::error::DecodeError> {
    let want = (payload.len() as u64)
        .saturating_mul(16)
        .clamp(1 << 16, crate::limits::max_input_bytes().max(1 << 16));
    // bincode's limit is a const generic: take the next power of two (at most 2x `want`).
    let exponent = want.next_power_of_two().trailing_zeros().clamp(16, 40);
    macro_rules! decode_with_limit_pow2 {
        ($($n:literal)*) => {
            match exponent {
                $($n => bincode::serde::decode_from_slice::<T, _>(
                    payload,
                    bincode::config::standard().with_limit::<{ 1usize << $n }>(),
                ),)*
                _ => unreachable!("exponent clamped to 16..=40"),
            }
        };
    }
    decode_with_limit_pow2!(16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40)
}

/// Reads and validates a checkpoint.
///
/// # Errors
/// [`Error::Io`]; [`Error::Corrupt`] for a wrong magic number, an unsupported version, a
/// truncated file or a checksum mismatch, each saying which.
pub fn load(path: &Path) -> Result<Checkpoint> {
    load_container(path, MAGIC, FORMAT_VERSION, "checkpoint")
}

/// Reads a value written by [`save_container`], checking in order: the magic number (`what`
/// names the expected kind of file), the version, the length and the checksum.
///
/// # Errors
/// As [`load`].
pub fn load_container<T: serde::de::DeserializeOwned>(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<T> {
    decode_container(&read_bounded(path)?, path, magic, version, what)
}

/// [`load_container`] on the file's bytes (`path` is used in errors).
///
/// # Errors
/// As [`load`].
pub fn decode_container<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<T> {
    if bytes.len() < HEADER {
        return Err(Error::corrupt(
            path,
            format!(
                "truncated: {} bytes, shorter than the {HEADER}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[..8] != magic {
        return Err(Error::corrupt(
            path,
            format!("not a {what} (bad magic number)"),
        ));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(Error::corrupt(
            path,
            format!("{what} format version {found}, this build reads {version}"),
        ));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return Err(Error::corrupt(
            path,
            format!(
                "truncated or padded: payload of {} bytes, header says {len}",
                payload.len()
            ),
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err(Error::corrupt(
            path,
            "checksum mismatch: the file is damaged",
        ));
    }
    let (value, used) = decode_bounded::<T>(payload).map_err(|e| {
        let why = match e {
            bincode::error::DecodeError::LimitExceeded => {
                "a length inside claims more memory than the file can describe (damaged or crafted)"
                    .to_string()
            }
            e => e.to_string(),
        };
        Error::corrupt(path, format!("cannot decode the {what}: {why}"))
    })?;
    if used != payload.len() {
        return Err(Error::corrupt(
            path,
            format!("trailing bytes after the {what}"),
        ));
    }
    Ok(value)
}
