//! NIfTI-1 volumes (`.nii`, and `.nii.gz` through a pure-Rust gzip decoder): the 348-byte
//! header (either byte order, detected from `sizeof_hdr`), the voxel data in any of the common
//! integer and float types, scaled by `scl_slope` / `scl_inter`.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

fn malformed(path: &Path, reason: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Turns one stored voxel (its bytes, little-endian or not) into a value.
type Decoder = fn(&[u8], bool) -> f32;

/// A volume: its dimensions (x fastest) and voxel values.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Sizes `dim[1..=dim[0]]` (x, y, z, t, ...).
    pub dims: Vec<usize>,
    /// Voxel sizes `pixdim[1..=dim[0]]`.
    pub spacing: Vec<f32>,
    /// The NIfTI datatype code it was stored as.
    pub datatype: i16,
    /// Values after scaling, x fastest.
    pub data: Vec<f32>,
}

/// Parses NIfTI-1 bytes (a single `.nii` file; `path` is used in errors).
///
/// # Errors
/// [`Error::Malformed`]: too short, a `sizeof_hdr` that is not 348 in either byte order, a bad
/// magic, an unsupported datatype (named with its code), more dimensions than 7, a data
/// section shorter than the dimensions need.
pub fn parse_nifti(bytes: &[u8], path: &Path) -> Result<Volume> {
    if bytes.len() < 348 {
        return Err(malformed(
            path,
            format!("{} bytes: shorter than a NIfTI-1 header (348)", bytes.len()),
        ));
    }
    let le = match (
        i32::from_le_bytes(bytes[0..4].try_into().expect("4")),
        i32::from_be_bytes(bytes[0..4].try_into().expect("4")),
    ) {
        (348, _) => true,
        (_, 348) => false,
        _ => return Err(malformed(path, "sizeof_hdr is not 348: not a NIfTI-1 file")),
    };
    let i16_at = |o: usize| -> i16 {
        let b = [bytes[o], bytes[o + 1]];
        if le {
            i16::from_le_bytes(b)
        } else {
            i16::from_be_bytes(b)
        }
    };
    let f32_at = |o: usize| -> f32 {
        let b: [u8; 4] = bytes[o..o + 4].try_into().expect("4");
        if le {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        }
    };
    let magic = &bytes[344..348];
    if magic != b"n+1\0" && magic != b"ni1\0" {
        return Err(malformed(
            path,
            format!("bad magic {magic:?} (expected \"n+1\")"),
        ));
    }
    let ndim = i16_at(40);
    if !(1..=7).contains(&ndim) {
        return Err(malformed(path, format!("dim[0] = {ndim}: must be 1 to 7")));
    }
    let dims: Vec<usize> = (1..=ndim as usize)
        .map(|i| i16_at(40 + 2 * i).max(1) as usize)
        .collect();
    let spacing: Vec<f32> = (1..=ndim as usize).map(|i| f32_at(76 + 4 * i)).collect();
    let datatype = i16_at(70);
    let (size, decode): (usize, Decoder) = match datatype {
        2 => (1, |b, _| b[0] as f32),
        256 => (1, |b, _| b[0] as i8 as f32),
        4 => (2, |b, le| {
            let a = [b[0], b[1]];
            (if le {
                i16::from_le_bytes(a)
            } else {
                i16::from_be_bytes(a)
            }) as f32
        }),
        512 => (2, |b, le| {
            let a = [b[0], b[1]];
            (if le {
                u16::from_le_bytes(a)
            } else {
                u16::from_be_bytes(a)
            }) as f32
        }),
        8 => (4, |b, le| {
            let a = b[..4].try_into().expect("4");
            (if le {
                i32::from_le_bytes(a)
            } else {
                i32::from_be_bytes(a)
            }) as f32
        }),
        768 => (4, |b, le| {
            let a = b[..4].try_into().expect("4");
            (if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }) as f32
        }),
        16 => (4, |b, le| {
            let a = b[..4].try_into().expect("4");
            if le {
                f32::from_le_bytes(a)
            } else {
                f32::from_be_bytes(a)
            }
        }),
        64 => (8, |b, le| {
            let a = b[..8].try_into().expect("8");
            (if le {
                f64::from_le_bytes(a)
            } else {
                f64::from_be_bytes(a)
            }) as f32
        }),
        code => {
            return Err(malformed(
                path,
                format!(
                    "unsupported datatype {code} (read: 2 uint8, 4 int16, 8 int32, 16 float32, 64 float64, 256 int8, 512 uint16, 768 uint32)"
                ),
            ));
        }
    };
    let vox_offset = f32_at(108);
    if !(vox_offset.is_finite() && vox_offset <= bytes.len() as f32) {
        return Err(malformed(
            path,
            format!(
                "vox_offset {vox_offset} lies outside the file ({} bytes)",
                bytes.len()
            ),
        ));
    }
    let offset = (vox_offset.max(0.0) as usize).max(348);
    let need = dims
        .iter()
        .try_fold(size, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_add(offset))
        .ok_or_else(|| malformed(path, format!("dimensions {dims:?} overflow a 64-bit size")))?;
    if bytes.len() < need {
        return Err(malformed(
            path,
            format!(
                "truncated: dimensions {dims:?} need {need} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let (slope, inter) = (f32_at(112), f32_at(116));
    let scale = slope != 0.0 && slope.is_finite() && !(slope == 1.0 && inter == 0.0);
    let data = bytes[offset..need]
        .chunks_exact(size)
        .map(|c| {
            let v = decode(c, le);
            if scale { v * slope + inter } else { v }
        })
        .collect();
    Ok(Volume {
        dims,
        spacing,
        datatype,
        data,
    })
}

/// Reads a `.nii` or `.nii.gz` file.
///
/// # Errors
/// A missing or unreadable file, a bad gzip stream, and the errors of [`parse_nifti`].
pub fn read_nifti(path: &Path) -> Result<Volume> {
    let raw = limits::read_file(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_nifti_file(raw, path)
}

/// [`read_nifti`] on a file's bytes, gzip-compressed or not (`path` is used in errors).
///
/// # Errors
/// As [`read_nifti`].
pub fn parse_nifti_file(raw: Vec<u8>, path: &Path) -> Result<Volume> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        // A gzip stream can expand a thousandfold: stop one byte past the limit.
        let limit = limits::max_input_bytes();
        let mut out = vec![];
        flate2::read::GzDecoder::new(&raw[..])
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| malformed(path, format!("bad gzip data: {e}")))?;
        if out.len() as u64 > limit {
            return Err(malformed(
                path,
                limits::over_limit("the decompressed volume"),
            ));
        }
        out
    } else {
        raw
    };
    parse_nifti(&bytes, path)
}
