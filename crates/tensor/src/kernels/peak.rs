//! A measurement of this core's multiply-add peak, the yardstick for the kernels' efficiency.

use std::time::Instant;

/// Peak f32 GFLOP/s of one core for each vector width this CPU runs: `(name, gflops)`.
///
/// Twelve independent FMA chains per width (enough to cover latency x throughput on current
/// x86 cores), timed for about 0.2 s each.
pub fn fma_peak_gflops() -> Vec<(&'static str, f64)> {
    let mut out = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        const ITERS: usize = 50_000_000;
        if std::arch::is_x86_feature_detected!("avx512f") {
            let t = Instant::now();
            // SAFETY: AVX-512F was detected just above.
            let sink = unsafe { x86::chains_avx512(ITERS) };
            let secs = t.elapsed().as_secs_f64();
            out.push((
                "avx512 (16 lanes)",
                (ITERS * 12 * 32) as f64 / secs / 1e9 + sink * 0.0,
            ));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let t = Instant::now();
            // SAFETY: AVX2 and FMA were detected just above.
            let sink = unsafe { x86::chains_avx2(ITERS) };
            let secs = t.elapsed().as_secs_f64();
            out.push((
                "avx2+fma (8 lanes)",
                (ITERS * 12 * 16) as f64 / secs / 1e9 + sink * 0.0,
            ));
        }
    }
    let _ = Instant::now;
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn chains_avx512(iters: usize) -> f64 {
        let mut acc = [_mm512_set1_ps(0.0); 12];
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(a, *v, b);
            }
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(s) as f64
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn chains_avx2(iters: usize) -> f64 {
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(a, *v, b);
            }
        }
        let s = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        let mut lanes = [0.0f32; 8];
        // SAFETY: lanes holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
        lanes.iter().map(|&v| v as f64).sum()
    }
}
