//! How much memory one input may claim. Every size read from a file (an array's shape, a
//! string's length, a zip member's declared size) is checked against what the file can hold
//! and against [`max_input_bytes`] before anything is allocated, so a crafted or damaged file
//! gets an error naming it instead of an out-of-memory abort. A crate of its own, with no
//! dependency, so that every reader (`nn`, `faces` through `nn`, `signals`) checks against the
//! same limit.
#![warn(missing_docs)]

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
}
