//! numpy's `.npy` arrays and `.npz` archives (a zip of `.npy` files, stored or deflated), the
//! format of Omniglot's and MedMNIST's releases.
//!
//! The `.npy` header is a Python dict literal of three fixed keys; reading it takes a few lines,
//! where the crates that do it pull a C build (a parser generator's stack guard) into the
//! workspace. The zip container is read with the `zip` crate (pure-Rust deflate).

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// An element type of an `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `|b1`.
    Bool,
    /// `|u1`.
    U8,
    /// `|i1`.
    I8,
    /// `u2`.
    U16,
    /// `i2`.
    I16,
    /// `u4`.
    U32,
    /// `i4`.
    I32,
    /// `i8`.
    I64,
    /// `f4`.
    F32,
    /// `f8`.
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::F64 => 8,
        }
    }
}

/// One array: shape, element type and its bytes, converted to little-endian, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
    /// `numel * dtype.size()` bytes, little-endian.
    pub bytes: Vec<u8>,
}

impl NpyArray {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Every element as `f32` (booleans as 0 / 1; 64-bit integers rounded).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = &self.bytes;
        let n = self.numel();
        let at = |i: usize, w: usize| -> &[u8] { &b[i * w..(i + 1) * w] };
        (0..n)
            .map(|i| match self.dtype {
                Dtype::Bool | Dtype::U8 => b[i] as f32,
                Dtype::I8 => b[i] as i8 as f32,
                Dtype::U16 => u16::from_le_bytes(at(i, 2).try_into().expect("2")) as f32,
                Dtype::I16 => i16::from_le_bytes(at(i, 2).try_into().expect("2")) as f32,
                Dtype::U32 => u32::from_le_bytes(at(i, 4).try_into().expect("4")) as f32,
                Dtype::I32 => i32::from_le_bytes(at(i, 4).try_into().expect("4")) as f32,
                Dtype::I64 => i64::from_le_bytes(at(i, 8).try_into().expect("8")) as f32,
                Dtype::F32 => f32::from_le_bytes(at(i, 4).try_into().expect("4")),
                Dtype::F64 => f64::from_le_bytes(at(i, 8).try_into().expect("8")) as f32,
            })
            .collect()
    }

    /// Every element as `i64` (floats truncated).
    pub fn to_i64(&self) -> Vec<i64> {
        if self.dtype == Dtype::I64 {
            return self
                .bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                .collect();
        }
        self.to_f32().into_iter().map(|v| v as i64).collect()
    }
}

fn parse_descr(descr: &str) -> Option<(Dtype, bool)> {
    // `get` rather than `split_at`: an empty or non-ASCII descr is refused, not a panic.
    let (order, code) = (descr.get(..1)?, descr.get(1..)?);
    let big = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => return None,
    };
    let t = match code {
        "b1" => Dtype::Bool,
        "u1" => Dtype::U8,
        "i1" => Dtype::I8,
        "u2" => Dtype::U16,
        "i2" => Dtype::I16,
        "u4" => Dtype::U32,
        "i4" => Dtype::I32,
        "i8" => Dtype::I64,
        "f4" => Dtype::F32,
        "f8" => Dtype::F64,
        _ => return None,
    };
    Some((t, big))
}

/// The value after `'key':` in the header dict, up to the next top-level comma or brace.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

/// Parses one `.npy` file's bytes; `name` is used in errors.
///
/// # Errors
/// [`Error::Corrupt`] for a bad magic, header, unsupported type, Fortran order, or a data
/// section shorter or longer than the shape says.
pub fn parse_npy(bytes: &[u8], name: &Path) -> Result<NpyArray> {
    let bad = |why: String| Error::corrupt(name, why);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy array (bad magic)".into()));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4")) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .ok_or_else(|| bad("truncated header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let descr = header_field(header, "descr")
        .ok_or_else(|| bad(format!("header without 'descr': {header}")))?
        .trim_matches(['\'', '"']);
    let (dtype, big_endian) =
        parse_descr(descr).ok_or_else(|| bad(format!("unsupported dtype {descr:?}")))?;
    if header_field(header, "fortran_order") != Some("False") {
        return Err(bad("Fortran-order arrays are not supported".into()));
    }
    let shape_text = header_field(header, "shape")
        .ok_or_else(|| bad(format!("header without 'shape': {header}")))?;
    let shape: Vec<usize> = shape_text
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(format!("bad shape {shape_text}")))?;
    let data = &bytes[hstart + hlen..];
    let want = crate::limits::checked_numel(&shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| {
            bad(format!(
                "shape {shape:?} of {descr} overflows a 64-bit size"
            ))
        })?;
    if data.len() != want {
        return Err(bad(format!(
            "shape {shape:?} of {descr} needs {want} data bytes, the file has {}",
            data.len()
        )));
    }
    let mut out = data.to_vec();
    if big_endian && dtype.size() > 1 {
        for c in out.chunks_exact_mut(dtype.size()) {
            c.reverse();
        }
    }
    Ok(NpyArray {
        shape,
        dtype,
        bytes: out,
    })
}

/// Reads every array of an `.npz` archive, by name without the `.npy` suffix, in archive order.
///
/// # Errors
/// [`Error::Io`] for an unreadable file; [`Error::Corrupt`] for a bad zip or a bad member.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    parse_npz(std::io::BufReader::new(file), path)
}

/// [`read_npz`] on any seekable reader (`path` is used in errors).
///
/// # Errors
/// As [`read_npz`].
pub fn parse_npz<R: Read + std::io::Seek>(
    reader: R,
    path: &Path,
) -> Result<Vec<(String, NpyArray)>> {
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| Error::corrupt(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let mut out = vec![];
    // Every member's declared size counts against the one limit.
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| Error::corrupt(path, format!("member {i}: {e}")))?;
        let name = member
            .name()
            .map_err(|e| Error::corrupt(path, format!("member {i}: {e}")))?
            .to_string();
        // The declared size is only a claim: it is checked against the limit before any
        // reservation, and the reader stops one byte past it, so neither a zip64 header
        // declaring 2^62 bytes nor a deflate bomb can allocate more than the limit.
        let declared = member.size();
        let limit = crate::limits::max_input_bytes();
        total = total.saturating_add(declared);
        if declared > limit || total > limit {
            return Err(Error::corrupt(
                path,
                format!(
                    "member {name}: {}",
                    crate::limits::too_large("the archive, by its declared sizes,", Some(total))
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(declared.min(1 << 20) as usize);
        (&mut member)
            .take(declared + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::corrupt(path, format!("member {name}: {e}")))?;
        if bytes.len() as u64 != declared {
            return Err(Error::corrupt(
                path,
                format!(
                    "member {name}: declares {declared} bytes, holds {} or more",
                    bytes.len()
                ),
            ));
        }
        let arr = parse_npy(&bytes, &path.join(&name))?;
        out.push((name.trim_end_matches(".npy").to_string(), arr));
    }
    Ok(out)
}

/// Takes the array `key` out of the arrays of an `.npz` archive (no copy).
///
/// # Errors
/// [`Error::Corrupt`] naming the missing key and the keys present.
pub fn take_array(
    arrays: &mut Vec<(String, NpyArray)>,
    key: &str,
    path: &Path,
) -> Result<NpyArray> {
    match arrays.iter().position(|(n, _)| n == key) {
        Some(i) => Ok(arrays.swap_remove(i).1),
        None => Err(Error::corrupt(
            path,
            format!(
                "no array {key:?} (has {:?})",
                arrays.iter().map(|a| &a.0).collect::<Vec<_>>()
            ),
        )),
    }
}

/// An f32 tensor as the bytes of a little-endian `.npy` file (version 1).
pub fn npy_bytes(t: &tensor::Tensor) -> Vec<u8> {
    let shape = match t.shape() {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so the data starts on a 64-byte boundary, as numpy does.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in t.to_vec() {
        out.extend(v.to_le_bytes());
    }
    out
}

/// Writes an f32 tensor as a `.npy` file ([`npy_bytes`]), atomically.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_npy(path: &Path, t: &tensor::Tensor) -> Result<()> {
    crate::checkpoint::write_atomic(path, &npy_bytes(t))
}
