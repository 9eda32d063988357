//! Elementwise and reduction loops compiled twice: once for the baseline target (SSE2 on
//! x86-64) and once with AVX2+FMA enabled, chosen at run time. The loop bodies are the same
//! generic code; only the instructions the compiler may use differ, so the two paths agree
//! bit for bit on everything but the order of additions in `sum`.

use std::sync::OnceLock;

/// True when the AVX2 versions run (detected once; `TENSOR_KERNEL=portable` disables them).
pub(crate) fn use_avx2() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var("TENSOR_KERNEL").as_deref() != Ok("portable")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

#[inline(always)]
fn map_generic<F: Fn(f32) -> f32>(src: &[f32], dst: &mut [f32], f: &F) {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = f(x);
    }
}

#[inline(always)]
fn zip_generic<F: Fn(f32, f32) -> f32>(a: &[f32], b: &[f32], dst: &mut [f32], f: &F) {
    for (o, (&x, &y)) in dst.iter_mut().zip(a.iter().zip(b)) {
        *o = f(x, y);
    }
}

/// Sum with eight independent partial sums (vectorises, and halves rounding growth).
#[inline(always)]
fn sum_generic(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `sum(a * b)` with sixteen partial sums.
#[inline(always)]
fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `sum((x - m)²)` with sixteen partial sums.
#[inline(always)]
fn sum_sq_dev_generic(x: &[f32], m: f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let c = x.chunks_exact(16);
    let tail: f32 = c.remainder().iter().map(|v| (v - m) * (v - m)).sum();
    for v in c {
        for i in 0..16 {
            let d = v[i] - m;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One row of a column-wise running maximum: where `row[x]` beats `best[x]` (is greater, or
/// is a NaN where `best[x]` is not), it replaces it and `at[x]` becomes `y`. Ties keep the
/// earlier row. Branch-free (`!(v <= b)` holds for v > b and for a NaN v), so it vectorises;
/// the row index is kept as f32 (exact below 2^24) so both selects use one mask type.
#[inline(always)]
fn column_max_step_generic(row: &[f32], best: &mut [f32], at: &mut [f32], y: f32) {
    for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(row) {
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let take = !(v <= *b) & !b.is_nan();
        *b = if take { v } else { *b };
        *a = if take { y } else { *a };
    }
}

/// One more candidate per window of a running maximum: candidate `v[i]` (from row `r[i]`,
/// window offset `j`) replaces `best[i]` when it beats it, or ties it (equal values, or two
/// NaNs) from an earlier row; ties from the same row keep the earlier offset. Branch-free.
#[inline(always)]
fn window_max_step_generic(
    v: &[f32],
    r: &[f32],
    j: f32,
    best: &mut [f32],
    row: &mut [f32],
    off: &mut [f32],
) {
    for (((b, br), bo), (&x, &xr)) in best
        .iter_mut()
        .zip(row.iter_mut())
        .zip(off.iter_mut())
        .zip(v.iter().zip(r))
    {
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let beats = !(x <= *b) & !b.is_nan();
        let tie = (x == *b) | (x.is_nan() & b.is_nan());
        let take = beats | (tie & (xr < *br));
        *b = if take { x } else { *b };
        *br = if take { xr } else { *br };
        *bo = if take { j } else { *bo };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn window_max_step(
        v: &[f32],
        r: &[f32],
        j: f32,
        best: &mut [f32],
        row: &mut [f32],
        off: &mut [f32],
    ) {
        super::window_max_step_generic(v, r, j, best, row, off)
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn column_max_step(row: &[f32], best: &mut [f32], at: &mut [f32], y: f32) {
        super::column_max_step_generic(row, best, at, y)
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_generic(a, b)
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
        super::sum_sq_dev_generic(x, m)
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn map<F: Fn(f32) -> f32>(src: &[f32], dst: &mut [f32], f: &F) {
        super::map_generic(src, dst, f)
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn zip<F: Fn(f32, f32) -> f32>(a: &[f32], b: &[f32], dst: &mut [f32], f: &F) {
        super::zip_generic(a, b, dst, f)
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum(x: &[f32]) -> f32 {
        super::sum_generic(x)
    }
}

use std::mem::MaybeUninit;

#[inline(always)]
fn map_uninit_generic<F: Fn(f32) -> f32>(src: &[f32], dst: &mut [MaybeUninit<f32>], f: &F) {
    for (o, &x) in dst.iter_mut().zip(src) {
        o.write(f(x));
    }
}

#[inline(always)]
fn zip_uninit_generic<F: Fn(f32, f32) -> f32>(
    a: &[f32],
    b: &[f32],
    dst: &mut [MaybeUninit<f32>],
    f: &F,
) {
    for (o, (&x, &y)) in dst.iter_mut().zip(a.iter().zip(b)) {
        o.write(f(x, y));
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_uninit {
    use std::mem::MaybeUninit;

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn map<F: Fn(f32) -> f32>(src: &[f32], dst: &mut [MaybeUninit<f32>], f: &F) {
        super::map_uninit_generic(src, dst, f)
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn zip<F: Fn(f32, f32) -> f32>(
        a: &[f32],
        b: &[f32],
        dst: &mut [MaybeUninit<f32>],
        f: &F,
    ) {
        super::zip_uninit_generic(a, b, dst, f)
    }
}

/// A chunk of output and the two input chunks it is computed from.
type ZipChunk<'a> = (&'a mut [MaybeUninit<f32>], (&'a [f32], &'a [f32]));

/// Elements per parallel task of [`map_new`] and [`zip_new`].
const PAR_CHUNK: usize = 1 << 13;

/// A new vector `f(src[i])`, written straight into fresh (pooled) memory without zeroing it
/// first, in parallel when `parallel`.
pub(crate) fn map_new<F: Fn(f32) -> f32 + Sync>(src: &[f32], f: &F, parallel: bool) -> Vec<f32> {
    use rayon::prelude::*;
    let n = src.len();
    let mut out = crate::storage::for_overwrite(n);
    let one = |(o, s): (&mut [MaybeUninit<f32>], &[f32])| {
        #[cfg(target_arch = "x86_64")]
        if use_avx2() {
            // SAFETY: use_avx2 checked AVX2 and FMA at run time.
            return unsafe { avx2_uninit::map(s, o, f) };
        }
        map_uninit_generic(s, o, f)
    };
    let spare = &mut out.spare_capacity_mut()[..n];
    if parallel {
        spare
            .par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK))
            .for_each(one);
    } else {
        one((spare, src));
    }
    // SAFETY: the capacity is at least n, and every one of the first n elements was written
    // above (the chunks of `spare` and `src` pair up one to one over all n elements).
    unsafe { out.set_len(n) };
    out
}

/// A new vector `f(a[i], b[i])` (equal lengths), as [`map_new`].
pub(crate) fn zip_new<F: Fn(f32, f32) -> f32 + Sync>(
    a: &[f32],
    b: &[f32],
    f: &F,
    parallel: bool,
) -> Vec<f32> {
    use rayon::prelude::*;
    assert_eq!(a.len(), b.len());
    let n = a.len();
    let mut out = crate::storage::for_overwrite(n);
    let one = |(o, (x, y)): ZipChunk<'_>| {
        #[cfg(target_arch = "x86_64")]
        if use_avx2() {
            // SAFETY: use_avx2 checked AVX2 and FMA at run time.
            return unsafe { avx2_uninit::zip(x, y, o, f) };
        }
        zip_uninit_generic(x, y, o, f)
    };
    let spare = &mut out.spare_capacity_mut()[..n];
    if parallel {
        spare
            .par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK)))
            .for_each(one);
    } else {
        one((spare, (a, b)));
    }
    // SAFETY: as in map_new: all n elements were written.
    unsafe { out.set_len(n) };
    out
}

/// `dst[i] = f(src[i])` over the common length.
pub(crate) fn map<F: Fn(f32) -> f32>(src: &[f32], dst: &mut [f32], f: &F) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: use_avx2 checked AVX2 and FMA at run time.
        return unsafe { avx2::map(src, dst, f) };
    }
    map_generic(src, dst, f)
}

/// `dst[i] = f(a[i], b[i])` over the common length.
pub(crate) fn zip<F: Fn(f32, f32) -> f32>(a: &[f32], b: &[f32], dst: &mut [f32], f: &F) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: use_avx2 checked AVX2 and FMA at run time.
        return unsafe { avx2::zip(a, b, dst, f) };
    }
    zip_generic(a, b, dst, f)
}

/// `sum(a[i] * b[i])` over the common length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: use_avx2 checked AVX2 and FMA at run time.
        return unsafe { avx2::dot(a, b) };
    }
    dot_generic(a, b)
}

/// `sum((x[i] - m)²)`.
pub(crate) fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: use_avx2 checked AVX2 and FMA at run time.
        return unsafe { avx2::sum_sq_dev(x, m) };
    }
    sum_sq_dev_generic(x, m)
}

/// See [`column_max_step_generic`]: one row of a column-wise running maximum.
pub(crate) fn column_max_step(row: &[f32], best: &mut [f32], at: &mut [f32], y: f32) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: use_avx2 checked AVX2 and FMA at run time.
        return unsafe { avx2::column_max_step(row, best, at, y) };
    }
    column_max_step_generic(row, best, at, y)
}

/// See [`window_max_step_generic`]: one more candidate per window of a running maximum.
pub(crate) fn window_max_step(
    v: &[f32],
    r: &[f32],
    j: f32,
    best: &mut [f32],
    row: &mut [f32],
    off: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: use_avx2 checked AVX2 and FMA at run time.
        return unsafe { avx2::window_max_step(v, r, j, best, row, off) };
    }
    window_max_step_generic(v, r, j, best, row, off)
}

/// The sum of a slice.
pub(crate) fn sum(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: use_avx2 checked AVX2 and FMA at run time.
        return unsafe { avx2::sum(x) };
    }
    sum_generic(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_paths_equal_the_portable_loops_on_every_tail_length() {
        for len in 0..=67usize {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos() + 0.5).collect();
            let (mut d1, mut d2) = (vec![0.0; len], vec![0.0; len]);
            let relu_new = |x: f32| if x > 0.0 { x } else { 0.0 };
            map(&a, &mut d2, &relu_new);
            assert_eq!(map_new(&a, &relu_new, len > 30), d2, "map_new, len {len}");
            let prod = |x: f32, y: f32| x * y - 1.0;
            zip(&a, &b, &mut d2, &prod);
            assert_eq!(zip_new(&a, &b, &prod, len > 30), d2, "zip_new, len {len}");
            let relu = |x: f32| if x > 0.0 { x } else { 0.0 };
            map(&a, &mut d1, &relu);
            map_generic(&a, &mut d2, &relu);
            assert_eq!(d1, d2, "map, len {len}");
            let mul_add = |x: f32, y: f32| x * y + 1.0;
            zip(&a, &b, &mut d1, &mul_add);
            zip_generic(&a, &b, &mut d2, &mul_add);
            assert_eq!(d1, d2, "zip, len {len}");
            let exact: f64 = a.iter().map(|&v| v as f64).sum();
            assert!((sum(&a) as f64 - exact).abs() < 1e-4, "sum, len {len}");
            assert_eq!(sum(&a), sum_generic(&a), "sum order, len {len}");
            let exact_dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!(
                (dot(&a, &b) as f64 - exact_dot).abs() < 1e-4,
                "dot, len {len}"
            );
            let exact_dev: f64 = a.iter().map(|&x| (x as f64 - 0.3).powi(2)).sum();
            assert!(
                (sum_sq_dev(&a, 0.3) as f64 - exact_dev).abs() < 1e-3,
                "sum_sq_dev, len {len}"
            );
        }
    }
}
