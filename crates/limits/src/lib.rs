//! How much memory one input may claim. Every size read from a file (an array's shape, a
//! string's length, a zip member's declared size) is checked against what the file can hold
//! and against [`max_input_bytes`] before anything is allocated, so a crafted or damaged file
//! gets an error naming it instead of an out-of-memory abort. A crate of its own, with no
//! dependency, so that every reader (`nn`, `faces` through `nn`, `signals`) checks against the
//! same limit.
#![warn(missing_docs)]

pub mod memory;

/// The environment variable that sets [`max_input_bytes`], in MiB.
pub const MAX_INPUT_MB_ENV: &str = "CNN_MAX_INPUT_MB";

/// The default of [`max_input_bytes`]: 2 GiB, above any file this project reads (the largest,
/// a VGG19 checkpoint with Adam's state, is about 1.7 GB) and below the address space of a
/// small machine.
pub const DEFAULT_MAX_INPUT_MB: u64 = 2048;

/// The most bytes one decoded input (an array, a container payload, an archive member) may
/// take: `CNN_MAX_INPUT_MB` MiB when that is set to a positive whole number, else
/// [`DEFAULT_MAX_INPUT_MB`].
pub fn max_input_bytes() -> u64 {
    std::env::var(MAX_INPUT_MB_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&mb| mb > 0)
        .unwrap_or(DEFAULT_MAX_INPUT_MB)
        .saturating_mul(1 << 20)
}

/// The byte size of `count` elements of `elem_size` bytes each when it is at most
/// [`max_input_bytes`]; `None` on overflow or above the limit.
pub fn checked_bytes(count: u64, elem_size: u64) -> Option<u64> {
    count
        .checked_mul(elem_size)
        .filter(|&b| b <= max_input_bytes())
}

/// The product of `dims` (an element count) without overflow.
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The message for a size above the limit: names the value, the limit and the way to raise it.
pub fn too_large(what: &str, bytes: Option<u64>) -> String {
    let limit_mb = max_input_bytes() >> 20;
    match bytes {
        Some(b) => format!(
            "{what} needs {} MiB, above the {limit_mb} MiB limit for one input (set {MAX_INPUT_MB_ENV} to raise it)",
            b.div_ceil(1 << 20)
        ),
        None => format!(
            "{what} has a size that overflows 64 bits (the {limit_mb} MiB limit: {MAX_INPUT_MB_ENV})"
        ),
    }
}

/// The message for an input found (while reading) to be larger than the limit.
pub fn over_limit(what: &str) -> String {
    format!(
        "{what} is larger than the {} MiB limit for one input (set {MAX_INPUT_MB_ENV} to raise it)",
        max_input_bytes() >> 20
    )
}

/// A whole file's bytes, or an error of kind [`std::io::ErrorKind::FileTooLarge`] (its message
/// names the size and the limit) when the file is larger than [`max_input_bytes`]: the size is
/// checked before the buffer is allocated, and the read stops one byte past the limit in case
/// the file grows meanwhile.
///
/// # Errors
/// Any error opening or reading the file; a file above the limit.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    read_file_within(path, max_input_bytes())
}

fn read_file_within(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let too_large = |bytes| std::io::Error::new(std::io::ErrorKind::FileTooLarge, bytes);
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(format!(
            "the file has {len} bytes, above the {} MiB limit for one input (set {MAX_INPUT_MB_ENV} to raise it)",
            limit >> 20
        )));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
        .map_err(|_| {
            too_large(format!(
                "the file's {} MiB could not be allocated",
                len >> 20
            ))
        })?;
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(format!(
            "the file grew above {limit} bytes while read"
        )));
    }
    Ok(bytes)
}

/// [`read_file`] of a text file: the same size check, then UTF-8 (an error of kind
/// [`std::io::ErrorKind::InvalidData`] otherwise).
///
/// # Errors
/// Those of [`read_file`]; bytes that are not UTF-8.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_file(path)?).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_overflow_or_exceed_the_limit() {
        assert_eq!(checked_numel(&[2, 3, 4]), Some(24));
        assert_eq!(checked_numel(&[]), Some(1));
        assert_eq!(checked_numel(&[1 << 40, 1 << 40]), None);
        assert_eq!(checked_bytes(10, 4), Some(40));
        assert_eq!(checked_bytes(u64::MAX, 2), None);
        assert_eq!(checked_bytes(max_input_bytes() / 4 + 1, 4), None);
        assert!(too_large("x", Some(3 << 30)).contains(MAX_INPUT_MB_ENV));
    }

    #[test]
    fn files_above_the_limit_are_refused_before_reading() {
        let path = std::env::temp_dir().join(format!("limits-read-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_file_within(&path, 10).unwrap(), b"0123456789");
        let e = read_file_within(&path, 9).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("10 bytes"), "{e}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let e = read_text(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        std::fs::remove_file(&path).ok();
    }
}
