//! The packed GEMM behind convolution: `C[m x n] (+)= A[m x k] * B[k x n]`, BLIS-style.
//!
//! A is packed into row panels of `MR` rows (k-major inside a panel), B into column panels of
//! `NR` columns, and a register-blocked micro-kernel multiplies one `MR x kc` panel of A by one
//! `kc x NR` panel of B. Convolution packs B straight from the input image (im2col into the
//! panel format, see `conv.rs`), so no whole-batch column buffer ever exists.
//!
//! The micro-kernel is chosen once at run time: AVX-512F (8 x 32), AVX2+FMA (6 x 16), or, on
//! any other CPU (ARM, x86 without FMA), `matrixmultiply`'s own kernels (NEON on aarch64, its
//! runtime-detected SSE/AVX on x86) over the same packed operands. Nothing here needs
//! `-C target-cpu=native`.

use std::sync::OnceLock;

/// The micro-kernel in use and its register-block shape.
#[derive(Clone, Copy)]
pub(crate) struct MicroKernel {
    /// Rows of C computed per call.
    pub(crate) mr: usize,
    /// Columns of C computed per call.
    pub(crate) nr: usize,
    /// Instruction set, for reports.
    pub(crate) name: &'static str,
    /// How a block of panels is multiplied.
    run: Block,
}

/// The code that multiplies packed panels.
#[derive(Clone, Copy)]
enum Block {
    /// A register-blocked kernel:
    /// `c[r * rs_c + j] (+)= sum_k a[k * mr + r] * b[k * nr + j]` for the full `mr x nr` block.
    ///
    /// # Safety
    /// `a` holds `kc * mr` floats, `b` holds `kc * nr` floats, and `c` is valid for reads and
    /// writes at `r * rs_c + j` for `r < mr`, `j < nr`.
    Micro(
        unsafe fn(
            kc: usize,
            a: *const f32,
            b: *const f32,
            c: *mut f32,
            rs_c: usize,
            accumulate: bool,
        ),
    ),
    /// `matrixmultiply::sgemm` on whole panels: with `mr = 1` the packed A is row-major, and
    /// each B panel is a row-major `kc x nr` matrix.
    Matrixmultiply,
}

impl MicroKernel {
    /// True for the portable kernel, which multiplies through `matrixmultiply`.
    pub(crate) fn is_matrixmultiply(&self) -> bool {
        matches!(self.run, Block::Matrixmultiply)
    }
}

/// The portable kernel: panels shaped so that `matrixmultiply` reads them as plain matrices.
const PORTABLE: MicroKernel = MicroKernel {
    mr: 1,
    nr: 64,
    name: "portable",
    run: Block::Matrixmultiply,
};

/// The micro-kernel for this CPU, detected once.
pub(crate) fn micro_kernel() -> MicroKernel {
    static KERNEL: OnceLock<MicroKernel> = OnceLock::new();
    *KERNEL.get_or_init(detect)
}

fn detect() -> MicroKernel {
    // Lets tests and benchmarks pin a kernel ("portable", "avx2", "avx512").
    let forced = std::env::var("TENSOR_KERNEL").ok();
    #[cfg(target_arch = "x86_64")]
    {
        let want = |name: &str| forced.as_deref().is_none_or(|f| f == name);
        if want("avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return MicroKernel {
                mr: 8,
                nr: 32,
                name: "avx512",
                run: Block::Micro(x86::kernel_8x32_avx512),
            };
        }
        if want("avx2")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return MicroKernel {
                mr: 6,
                nr: 16,
                name: "avx2+fma",
                run: Block::Micro(x86::kernel_6x16_avx2),
            };
        }
    }
    let _ = forced;
    PORTABLE
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// AVX-512F kernel: 8 rows x 32 columns, 16 zmm accumulators, two B loads and eight
    /// broadcasts per k step.
    ///
    /// # Safety
    /// As `MicroKernel::run`, and the CPU supports AVX-512F (checked by `detect`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_8x32_avx512(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        for k in 0..kc {
            // SAFETY: k < kc, so b + k*32 .. +32 and a + k*8 .. +8 are inside the packed panels.
            unsafe {
                let b0 = _mm512_loadu_ps(b.add(k * 32));
                let b1 = _mm512_loadu_ps(b.add(k * 32 + 16));
                for r in 0..8 {
                    let ar = _mm512_set1_ps(*a.add(k * 8 + r));
                    acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
                }
            }
        }
        for r in 0..8 {
            // SAFETY: the caller guarantees c is valid for 8 rows of 32 floats at stride rs_c.
            unsafe {
                let row = c.add(r * rs_c);
                let (mut v0, mut v1) = (acc[r][0], acc[r][1]);
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
                    v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row.add(16)));
                }
                _mm512_storeu_ps(row, v0);
                _mm512_storeu_ps(row.add(16), v1);
            }
        }
    }

    /// Where one column group of the indirect kernel reads and writes (16 lanes on AVX-512, 8
    /// on AVX2). Its lanes are consecutive output positions that may run over up to `S` output
    /// rows ("segments"): lane `l` of segment `s` reads `x[tap + seg_pos[s] + l]` (offsets wrap:
    /// `seg_pos` is the segment's first input offset minus its first lane), and the group
    /// writes the lanes of `out_mask` at `c + out + l`.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct ColGroup {
        pub(crate) seg_pos: [usize; 3],
        pub(crate) seg_mask: [u16; 3],
        pub(crate) out: usize,
        pub(crate) out_mask: u16,
    }

    /// One SIMD width as the indirect kernel uses it. Each method is one or two instructions;
    /// they are `inline(always)` so that, inlined into a `#[target_feature]` entry point, the
    /// intrinsics they call are compiled with that entry point's instruction set.
    pub(crate) trait Width {
        /// A vector of `LANES` floats.
        type V: Copy;
        /// A lane mask in the form the masked loads and stores take.
        type M: Copy;
        const LANES: usize;
        /// Rows per packed A panel of this width's GEMM micro-kernel.
        const MR: usize;
        /// # Safety
        /// The CPU supports the width's instruction set (as for every method here).
        unsafe fn mask(bits: u16) -> Self::M;
        /// # Safety
        /// As [`Width::mask`].
        unsafe fn splat(v: f32) -> Self::V;
        /// `a * b + c`.
        /// # Safety
        /// As [`Width::mask`].
        unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        /// # Safety
        /// `LANES` floats at `p` are readable.
        unsafe fn load(p: *const f32) -> Self::V;
        /// The lanes of `m` from `p`, zero elsewhere.
        /// # Safety
        /// The lanes of `m` at `p` are readable (the others are never touched).
        unsafe fn load_masked(m: Self::M, p: *const f32) -> Self::V;
        /// `v` with the lanes of `m` replaced from `p`; `v` is zero in those lanes.
        /// # Safety
        /// As [`Width::load_masked`].
        unsafe fn load_masked_into(v: Self::V, m: Self::M, p: *const f32) -> Self::V;
        /// # Safety
        /// `LANES` floats at `p` are writable.
        unsafe fn store(p: *mut f32, v: Self::V);
        /// # Safety
        /// The lanes of `m` at `p` are writable (the others are never touched).
        unsafe fn store_masked(p: *mut f32, m: Self::M, v: Self::V);
        /// Lane `j` of element `i` is the sum of the lanes of `acc[i][j]`.
        /// # Safety
        /// As [`Width::mask`].
        unsafe fn row_sums<const I: usize>(acc: [[Self::V; 4]; I]) -> [__m128; I];
    }

    /// AVX-512F: 16 lanes, 8-row panels.
    pub(crate) struct Avx512;

    impl Width for Avx512 {
        type V = __m512;
        type M = __mmask16;
        const LANES: usize = 16;
        const MR: usize = 8;
        #[inline(always)]
        unsafe fn mask(bits: u16) -> __mmask16 {
            bits
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 16 readable floats at p.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_masked(m: __mmask16, p: *const f32) -> __m512 {
            // SAFETY: masked-off lanes are not accessed (fault suppression).
            unsafe { _mm512_maskz_loadu_ps(m, p) }
        }
        #[inline(always)]
        unsafe fn load_masked_into(v: __m512, m: __mmask16, p: *const f32) -> __m512 {
            // SAFETY: as load_masked.
            unsafe { _mm512_mask_loadu_ps(v, m, p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees 16 writable floats at p.
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, m: __mmask16, v: __m512) {
            // SAFETY: masked-off lanes are not accessed.
            unsafe { _mm512_mask_storeu_ps(p, m, v) }
        }
        #[inline(always)]
        unsafe fn row_sums<const I: usize>(acc: [[__m512; 4]; I]) -> [__m128; I] {
            // SAFETY: the caller guarantees AVX-512F.
            unsafe {
                let zero = _mm512_setzero_ps();
                let sums = hsum_4x4(std::array::from_fn(
                    |i| if i < I { acc[i] } else { [zero; 4] },
                ));
                let blocks = [
                    _mm512_extractf32x4_ps::<0>(sums),
                    _mm512_extractf32x4_ps::<1>(sums),
                    _mm512_extractf32x4_ps::<2>(sums),
                    _mm512_extractf32x4_ps::<3>(sums),
                ];
                std::array::from_fn(|i| blocks[i])
            }
        }
    }

    /// AVX2 + FMA: 8 lanes, 6-row panels; masks are vectors whose lanes have the sign bit set.
    pub(crate) struct Avx2;

    impl Width for Avx2 {
        type V = __m256;
        type M = __m256i;
        const LANES: usize = 8;
        const MR: usize = 6;
        #[inline(always)]
        unsafe fn mask(bits: u16) -> __m256i {
            // SAFETY: the caller guarantees AVX2.
            unsafe {
                let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
                let set = _mm256_and_si256(_mm256_set1_epi32(i32::from(bits)), lane_bits);
                _mm256_cmpeq_epi32(set, lane_bits)
            }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            // SAFETY: the caller guarantees AVX.
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: the caller guarantees FMA.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable floats at p.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_masked(m: __m256i, p: *const f32) -> __m256 {
            // SAFETY: vmaskmovps does not access (or fault on) masked-off lanes.
            unsafe { _mm256_maskload_ps(p, m) }
        }
        #[inline(always)]
        unsafe fn load_masked_into(v: __m256, m: __m256i, p: *const f32) -> __m256 {
            // SAFETY: as load_masked; the loaded vector is zero outside m and v is zero inside
            // it, so OR merges the two.
            unsafe { _mm256_or_ps(v, _mm256_maskload_ps(p, m)) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees 8 writable floats at p.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, m: __m256i, v: __m256) {
            // SAFETY: vmaskmovps does not access masked-off lanes.
            unsafe { _mm256_maskstore_ps(p, m, v) }
        }
        #[inline(always)]
        unsafe fn row_sums<const I: usize>(acc: [[__m256; 4]; I]) -> [__m128; I] {
            // SAFETY: the caller guarantees AVX.
            unsafe {
                std::array::from_fn(|i| {
                    let [a, b, c, d] = acc[i];
                    // hadd pairs neighbours within each 128-bit half; after two levels each
                    // half holds partial sums of a, b, c, d in order, and the halves add up.
                    let abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
                    _mm_add_ps(
                        _mm256_castps256_ps128(abcd),
                        _mm256_extractf128_ps::<1>(abcd),
                    )
                })
            }
        }
    }

    /// The indirect kernel's arguments past the compile-time shape.
    pub(crate) type IndirectKernel = unsafe fn(
        usize,
        *const f32,
        *const f32,
        *const usize,
        [ColGroup; 2],
        *const f32,
        *mut f32,
        usize,
        bool,
    );

    /// Indirect kernel for stride-1 convolution: `R` (at most `W::MR`) rows of C x two column
    /// groups of `W::LANES` output positions, with B read straight from the (padded) input
    /// image instead of a packed panel: row `kk` of B is gathered from `S` masked loads per
    /// group at `x + taps[kk] + seg_pos`. Accumulators start at `bias[r]`, or with
    /// `accumulate` at C's current values (a later slice of the reduction). `R` below `W::MR`
    /// serves the last block of rows without wasted multiply-adds; `S` above 1 packs output
    /// rows narrower than a group densely; `FULL` (with `S == 1`) says every lane of both
    /// groups is in use, so loads and stores need no mask (AVX2's masked moves cost an extra
    /// micro-op, on Intel on an FMA port).
    ///
    /// # Safety
    /// The CPU supports `W`'s instruction set; `a` holds `k * W::MR` floats (panel stride
    /// `W::MR`); `taps` holds `k` offsets; for every `kk < k`, group and segment `s < S`, the
    /// lanes set in `seg_mask[s]` of `x + taps[kk] + seg_pos[s]` are readable (masked-off
    /// lanes are never touched); `bias` holds `R` floats; C row `r < R` is writable at
    /// `c + r * rs_c + out + lane` for the lanes in `out_mask`, and readable there when
    /// `accumulate`. With `FULL`, both masks are all `W::LANES` lanes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn indirect<W: Width, const R: usize, const S: usize, const FULL: bool>(
        k: usize,
        a: *const f32,
        x: *const f32,
        taps: *const usize,
        groups: [ColGroup; 2],
        bias: *const f32,
        c: *mut f32,
        rs_c: usize,
        accumulate: bool,
    ) {
        // SAFETY: the caller's contract, item by item: bias holds R floats; kk < k keeps taps
        // and a in bounds; masked loads touch only the lanes the caller guarantees readable,
        // FULL loads only full groups; C is read and written only in the lanes the caller
        // guarantees.
        unsafe {
            let [g0, g1] = groups;
            let (o0, o1) = (W::mask(g0.out_mask), W::mask(g1.out_mask));
            let mut acc = [[W::splat(0.0); 2]; R];
            for (r, row) in acc.iter_mut().enumerate() {
                *row = if !accumulate {
                    let b = W::splat(*bias.add(r));
                    [b, b]
                } else {
                    let c_row = c.add(r * rs_c);
                    let (c0, c1) = (c_row.wrapping_add(g0.out), c_row.wrapping_add(g1.out));
                    if FULL {
                        [W::load(c0), W::load(c1)]
                    } else {
                        [W::load_masked(o0, c0), W::load_masked(o1, c1)]
                    }
                };
            }
            let m0: [W::M; S] = std::array::from_fn(|s| W::mask(g0.seg_mask[s]));
            let m1: [W::M; S] = std::array::from_fn(|s| W::mask(g1.seg_mask[s]));
            // Wrapping pointer arithmetic: a segment's base may lie before its first valid lane.
            let base = |g: ColGroup, s: usize| x.wrapping_add(g.seg_pos[s]);
            let (p0, p1) = (base(g0, 0), base(g1, 0));
            for kk in 0..k {
                let t = *taps.add(kk);
                // The next pair's window rows: far apart in memory, so the hardware
                // prefetcher cannot follow them all.
                _mm_prefetch::<_MM_HINT_T0>(p1.wrapping_add(t + 3 * W::LANES).cast());
                _mm_prefetch::<_MM_HINT_T0>(p1.wrapping_add(t + 4 * W::LANES).cast());
                let (b0, b1) = if FULL {
                    (W::load(p0.wrapping_add(t)), W::load(p1.wrapping_add(t)))
                } else {
                    let mut b0 = W::load_masked(m0[0], p0.wrapping_add(t));
                    let mut b1 = W::load_masked(m1[0], p1.wrapping_add(t));
                    for s in 1..S {
                        b0 = W::load_masked_into(b0, m0[s], base(g0, s).wrapping_add(t));
                        b1 = W::load_masked_into(b1, m1[s], base(g1, s).wrapping_add(t));
                    }
                    (b0, b1)
                };
                for (r, row) in acc.iter_mut().enumerate() {
                    let ar = W::splat(*a.add(kk * W::MR + r));
                    row[0] = W::fmadd(ar, b0, row[0]);
                    row[1] = W::fmadd(ar, b1, row[1]);
                }
            }
            for (r, row_acc) in acc.iter().enumerate() {
                let row = c.add(r * rs_c);
                if FULL {
                    W::store(row.wrapping_add(g0.out), row_acc[0]);
                    W::store(row.wrapping_add(g1.out), row_acc[1]);
                } else {
                    W::store_masked(row.wrapping_add(g0.out), o0, row_acc[0]);
                    W::store_masked(row.wrapping_add(g1.out), o1, row_acc[1]);
                }
            }
        }
    }

    /// [`indirect`] compiled for AVX-512F.
    ///
    /// # Safety
    /// As [`indirect`] with `W = Avx512`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn kernel_indirect_avx512<
        const R: usize,
        const S: usize,
        const FULL: bool,
    >(
        k: usize,
        a: *const f32,
        x: *const f32,
        taps: *const usize,
        groups: [ColGroup; 2],
        bias: *const f32,
        c: *mut f32,
        rs_c: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract; AVX-512F is enabled here.
        unsafe { indirect::<Avx512, R, S, FULL>(k, a, x, taps, groups, bias, c, rs_c, accumulate) }
    }

    /// [`indirect`] compiled for AVX2 + FMA.
    ///
    /// # Safety
    /// As [`indirect`] with `W = Avx2`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn kernel_indirect_avx2<const R: usize, const S: usize, const FULL: bool>(
        k: usize,
        a: *const f32,
        x: *const f32,
        taps: *const usize,
        groups: [ColGroup; 2],
        bias: *const f32,
        c: *mut f32,
        rs_c: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract; AVX2 and FMA are enabled here.
        unsafe { indirect::<Avx2, R, S, FULL>(k, a, x, taps, groups, bias, c, rs_c, accumulate) }
    }

    /// Dot-product ("A times B-transposed") kernel for the weight gradient of a stride-1
    /// convolution: `out[i][j] += sum_p dy[i][p] * x[taps[j] + pos(p)]` for `I` rows of dY
    /// and 4 taps, over the output rows listed in `rows` as (dY offset, input position). Each
    /// output row has `width` columns; the last vector of a row is masked. `I x 4`
    /// accumulators: 4 x 4 on AVX-512 (8 loads per 16 FMAs), 3 x 4 on AVX2 (its 16 registers
    /// hold 12 accumulators, 3 rows of dY and one input vector).
    ///
    /// # Safety
    /// The CPU supports `W`'s instruction set. For every listed row, `dy[i] + dy_off + c` and
    /// `x + taps[j] + pos + c` are readable for `i < I`, `j < 4`, `c < width`; `out` is
    /// writable at `i * ld_out + j` for `i < I`, `j < 4`.
    #[inline(always)]
    unsafe fn dot_rows<W: Width, const I: usize>(
        dy: [*const f32; I],
        x: *const f32,
        taps: [usize; 4],
        rows: &[(usize, usize)],
        width: usize,
        out: *mut f32,
        ld_out: usize,
    ) {
        // SAFETY: loads stay below `width` in every listed row (the tail is masked), as the
        // contract allows; `out` is written in the I x 4 block the contract names.
        unsafe {
            let mut acc = [[W::splat(0.0); 4]; I];
            let full = width / W::LANES;
            let tail = width % W::LANES;
            let tail_mask = W::mask(if tail == 0 { 0 } else { (1u16 << tail) - 1 });
            for &(dy_off, pos) in rows {
                let d0: [*const f32; I] = std::array::from_fn(|i| dy[i].add(dy_off));
                let x0: [*const f32; 4] = std::array::from_fn(|j| x.add(taps[j] + pos));
                for v in 0..full {
                    let c = v * W::LANES;
                    let d: [W::V; I] = std::array::from_fn(|i| W::load(d0[i].add(c)));
                    for j in 0..4 {
                        let xv = W::load(x0[j].add(c));
                        for i in 0..I {
                            acc[i][j] = W::fmadd(d[i], xv, acc[i][j]);
                        }
                    }
                }
                if tail != 0 {
                    let c = full * W::LANES;
                    let d: [W::V; I] =
                        std::array::from_fn(|i| W::load_masked(tail_mask, d0[i].add(c)));
                    for j in 0..4 {
                        let xv = W::load_masked(tail_mask, x0[j].add(c));
                        for i in 0..I {
                            acc[i][j] = W::fmadd(d[i], xv, acc[i][j]);
                        }
                    }
                }
            }
            for (i, sums) in W::row_sums(acc).into_iter().enumerate() {
                let row = out.add(i * ld_out);
                _mm_storeu_ps(row, _mm_add_ps(_mm_loadu_ps(row), sums));
            }
        }
    }

    /// [`dot_rows`] compiled for AVX-512F, 4 rows of dY.
    ///
    /// # Safety
    /// As [`dot_rows`] with `W = Avx512`.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn kernel_nt_avx512(
        dy: [*const f32; 4],
        x: *const f32,
        taps: [usize; 4],
        rows: &[(usize, usize)],
        width: usize,
        out: *mut f32,
        ld_out: usize,
    ) {
        // SAFETY: forwarded contract; AVX-512F is enabled here.
        unsafe { dot_rows::<Avx512, 4>(dy, x, taps, rows, width, out, ld_out) }
    }

    /// [`dot_rows`] compiled for AVX2 + FMA, 3 rows of dY.
    ///
    /// # Safety
    /// As [`dot_rows`] with `W = Avx2`.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn kernel_nt_avx2(
        dy: [*const f32; 3],
        x: *const f32,
        taps: [usize; 4],
        rows: &[(usize, usize)],
        width: usize,
        out: *mut f32,
        ld_out: usize,
    ) {
        // SAFETY: forwarded contract; AVX2 and FMA are enabled here.
        unsafe { dot_rows::<Avx2, 3>(dy, x, taps, rows, width, out, ld_out) }
    }

    /// Sums each of 16 vectors at once: lane `4 * i + j` of the result is the sum of
    /// `v[i][j]`. A transpose-and-add tree (unpack ps, unpack pd, two 128-bit lane shuffles):
    /// 30 instructions where 16 separate horizontal sums would take about 100.
    #[target_feature(enable = "avx512f")]
    fn hsum_4x4(v: [[__m512; 4]; 4]) -> __m512 {
        let v: [__m512; 16] = std::array::from_fn(|q| v[q / 4][q % 4]);
        // Level 1: lanes 0, 2 of each 128-bit block belong to v[2p], lanes 1, 3 to v[2p + 1].
        let w1: [__m512; 8] = std::array::from_fn(|p| {
            let (x, y) = (v[2 * p], v[2 * p + 1]);
            _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y))
        });
        // Level 2: element e of each 128-bit block belongs to v[4p + e].
        let w2: [__m512; 4] = std::array::from_fn(|p| {
            let (a, b) = (_mm512_castps_pd(w1[2 * p]), _mm512_castps_pd(w1[2 * p + 1]));
            _mm512_add_ps(
                _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
            )
        });
        // Levels 3 and 4: add the four 128-bit blocks of each w2[p] and gather them in block p.
        let fold = |a: __m512, b: __m512| {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xDD>(a, b),
            )
        };
        fold(fold(w2[0], w2[1]), fold(w2[2], w2[3]))
    }

    /// AVX2+FMA kernel: 6 rows x 16 columns, 12 ymm accumulators (the BLIS Haswell shape).
    ///
    /// # Safety
    /// As `MicroKernel::run`, and the CPU supports AVX2 and FMA (checked by `detect`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_6x16_avx2(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for k in 0..kc {
            // SAFETY: k < kc, so b + k*16 .. +16 and a + k*6 .. +6 are inside the packed panels.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(k * 16));
                let b1 = _mm256_loadu_ps(b.add(k * 16 + 8));
                for r in 0..6 {
                    let ar = _mm256_broadcast_ss(&*a.add(k * 6 + r));
                    acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
                }
            }
        }
        for r in 0..6 {
            // SAFETY: the caller guarantees c is valid for 6 rows of 16 floats at stride rs_c.
            unsafe {
                let row = c.add(r * rs_c);
                let (mut v0, mut v1) = (acc[r][0], acc[r][1]);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
                }
                _mm256_storeu_ps(row, v0);
                _mm256_storeu_ps(row.add(8), v1);
            }
        }
    }
}

/// A strided read-only matrix: element (i, j) is `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) offset: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl MatRef<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.offset + i * self.rs + j * self.cs]
    }
}

/// Flushes subnormal values to zero as they are packed (see docs/PERFORMANCE.md, "Denormals").
#[inline(always)]
pub(crate) fn ftz(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// A packed in `MR`-row panels over its whole depth `k`: panel `p` is at `p * k * mr`, and
/// inside it element (r, kk) is at `kk * mr + r`. Rows past `m` are zero.
pub(crate) struct PackedA {
    pub(crate) data: Vec<f32>,
    pub(crate) m: usize,
    pub(crate) k: usize,
}

impl Drop for PackedA {
    fn drop(&mut self) {
        super::scratch::give(std::mem::take(&mut self.data));
    }
}

/// Packs an `m x k` matrix for the micro-kernel `mk`.
pub(crate) fn pack_a(mk: MicroKernel, m: usize, k: usize, a: MatRef<'_>) -> PackedA {
    use rayon::prelude::*;
    let mr = mk.mr;
    let panels = m.div_ceil(mr);
    let mut data = super::scratch::take(panels * k * mr);
    if data.is_empty() {
        return PackedA { data, m, k };
    }
    let pack_panel = |(p, panel): (usize, &mut [f32])| {
        let rows = mr.min(m - p * mr);
        if a.rs == 1 && a.cs != 1 {
            // A is a transposed row-major matrix (a Gram matrix's gradient): the panel's
            // column kk is `rows` consecutive elements of source row kk.
            for kk in 0..k {
                let start = a.offset + kk * a.cs + p * mr;
                for (o, &v) in panel[kk * mr..kk * mr + rows]
                    .iter_mut()
                    .zip(&a.data[start..start + rows])
                {
                    *o = ftz(v);
                }
            }
            return;
        }
        for r in 0..rows {
            let i = p * mr + r;
            if a.cs == 1 {
                let row = &a.data[a.offset + i * a.rs..a.offset + i * a.rs + k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * mr + r] = ftz(v);
                }
            } else {
                for kk in 0..k {
                    panel[kk * mr + r] = ftz(a.at(i, kk));
                }
            }
        }
    };
    // Large weight matrices (deep layers: 512 x 4608) take milliseconds to pack: share it.
    if data.len() >= 1 << 20 {
        data.par_chunks_mut(k * mr).enumerate().for_each(pack_panel);
    } else {
        data.chunks_mut(k * mr).enumerate().for_each(pack_panel);
    }
    PackedA { data, m, k }
}

/// Packs a `k x n` matrix into `NR`-column panels (panel `q` at `q * k * nr`, element
/// (kk, j) at `kk * nr + j`); columns past `n` are zero. `dst` is resized as needed.
pub(crate) fn pack_b(mk: MicroKernel, k: usize, n: usize, b: MatRef<'_>, dst: &mut Vec<f32>) {
    let nr = mk.nr;
    let panels = n.div_ceil(nr);
    dst.clear();
    dst.resize(panels * k * nr, 0.0);
    for q in 0..panels {
        let cols = nr.min(n - q * nr);
        let panel = &mut dst[q * k * nr..(q + 1) * k * nr];
        if b.rs == 1 && b.cs != 1 {
            // B is a transposed row-major matrix (the right side of a Gram matrix F F^T):
            // read each of its columns, a contiguous source row, once.
            for j in 0..cols {
                let start = b.offset + (q * nr + j) * b.cs;
                for (kk, &v) in b.data[start..start + k].iter().enumerate() {
                    panel[kk * nr + j] = ftz(v);
                }
            }
            continue;
        }
        for kk in 0..k {
            let out = &mut panel[kk * nr..kk * nr + cols];
            if b.cs == 1 {
                let start = b.offset + kk * b.rs + q * nr;
                for (o, &v) in out.iter_mut().zip(&b.data[start..start + cols]) {
                    *o = ftz(v);
                }
            } else {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = ftz(b.at(kk, q * nr + j));
                }
            }
        }
    }
}

/// `C (+)= A[:, k0..k0+kc] * B` where `b_panels` is B (`kc x n`) packed by [`pack_b`] or the
/// im2col packer, and C is the row-major `m x n` block at `c[0]` with row stride `rs_c`.
///
/// # Panics
/// If `c` is too short for `m` rows of `n` columns at stride `rs_c`, or the packed operands do
/// not match the sizes (internal invariants; callers size them).
pub(crate) fn gemm_packed(
    mk: MicroKernel,
    a: &PackedA,
    k0: usize,
    kc: usize,
    b_panels: &[f32],
    n: usize,
    c: &mut [f32],
    rs_c: usize,
    accumulate: bool,
) {
    assert!(a.m == 0 || n == 0 || c.len() >= (a.m - 1) * rs_c + n);
    // SAFETY: the block is inside `c` (assert above) and `c` is borrowed exclusively.
    unsafe { gemm_packed_raw(mk, a, k0, kc, b_panels, n, c.as_mut_ptr(), rs_c, accumulate) }
}

/// As [`gemm_packed`] on a raw block, for tasks that share one output buffer.
///
/// # Safety
/// `c` is valid for reads and writes at `r * rs_c + j` for `r < a.m`, `j < n`, and nothing
/// else accesses those elements while this runs.
pub(crate) unsafe fn gemm_packed_raw(
    mk: MicroKernel,
    a: &PackedA,
    k0: usize,
    kc: usize,
    b_panels: &[f32],
    n: usize,
    c: *mut f32,
    rs_c: usize,
    accumulate: bool,
) {
    let (mr, nr) = (mk.mr, mk.nr);
    let m = a.m;
    assert!(k0 + kc <= a.k && b_panels.len() >= n.div_ceil(nr) * kc * nr);
    let run = match mk.run {
        Block::Micro(run) => run,
        Block::Matrixmultiply => {
            debug_assert_eq!(mr, 1);
            for q in 0..n.div_ceil(nr) {
                let cols = nr.min(n - q * nr);
                // SAFETY: with mr = 1, A's packed data is row-major m x a.k, so rows 0..m,
                // columns k0..k0+kc are inside it at row stride a.k (assert above); B panel q
                // holds kc x nr floats at row stride nr (assert above), of which `cols` are
                // read; C rows 0..m, columns q*nr .. q*nr+cols lie in the caller's block,
                // which nothing else touches; beta = 0 when not accumulating, so C need not
                // hold finite values then.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        kc,
                        cols,
                        1.0,
                        a.data.as_ptr().add(k0),
                        a.k as isize,
                        1,
                        b_panels.as_ptr().add(q * kc * nr),
                        nr as isize,
                        1,
                        if accumulate { 1.0 } else { 0.0 },
                        c.add(q * nr),
                        rs_c as isize,
                        1,
                    );
                }
            }
            return;
        }
    };
    let mut edge = [0.0f32; 8 * 32];
    for q in 0..n.div_ceil(nr) {
        let cols = nr.min(n - q * nr);
        let bp = &b_panels[q * kc * nr..(q + 1) * kc * nr];
        for p in 0..m.div_ceil(mr) {
            let rows = mr.min(m - p * mr);
            let ap = &a.data[p * a.k * mr + k0 * mr..p * a.k * mr + (k0 + kc) * mr];
            let c_off = p * mr * rs_c + q * nr;
            if rows == mr && cols == nr {
                // SAFETY: ap holds kc*mr floats and bp kc*nr floats (sliced above); the full
                // block lies inside the caller's m x n block since p*mr + mr <= m and
                // q*nr + nr <= n here.
                unsafe { run(kc, ap.as_ptr(), bp.as_ptr(), c.add(c_off), rs_c, accumulate) };
            } else {
                // Partial block: compute the full block into a scratch tile, copy what exists.
                let tile = &mut edge[..mr * nr];
                // SAFETY: as above for ap and bp; tile holds mr*nr floats at row stride nr.
                unsafe { run(kc, ap.as_ptr(), bp.as_ptr(), tile.as_mut_ptr(), nr, false) };
                for r in 0..rows {
                    for j in 0..cols {
                        // SAFETY: r < m - p*mr and j < n - q*nr: inside the caller's block.
                        let dst = unsafe { &mut *c.add(c_off + r * rs_c + j) };
                        let v = tile[r * nr + j];
                        *dst = if accumulate { *dst + v } else { v };
                    }
                }
            }
        }
    }
}

/// Depth of one packed block: a B micro-panel (KC x NR) then fits in L1 next to an A panel.
pub(crate) const KC: usize = 256;

/// `C (+)= A * B` with A already packed and B strided, blocked over k.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_prepacked_a(
    mk: MicroKernel,
    pa: &PackedA,
    b: MatRef<'_>,
    n: usize,
    c: &mut [f32],
    rs_c: usize,
    accumulate: bool,
    scratch: &mut Vec<f32>,
) {
    if pa.k == 0 {
        if !accumulate {
            for r in 0..pa.m {
                c[r * rs_c..r * rs_c + n].fill(0.0);
            }
        }
        return;
    }
    let mut k0 = 0;
    while k0 < pa.k {
        let kc = KC.min(pa.k - k0);
        let bb = MatRef {
            offset: b.offset + k0 * b.rs,
            ..b
        };
        pack_b(mk, kc, n, bb, scratch);
        gemm_packed(mk, pa, k0, kc, scratch, n, c, rs_c, accumulate || k0 > 0);
        k0 += kc;
    }
}

/// The name of the micro-kernel this process uses ("avx512", "avx2+fma" or "portable").
pub fn kernel_name() -> &'static str {
    micro_kernel().name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for kk in 0..k {
                    c[i * n + j] += a[i * k + kk] as f64 * b[kk * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn every_kernel_matches_naive_on_odd_sizes() {
        let mut kernels = vec![PORTABLE];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(MicroKernel {
                    mr: 8,
                    nr: 32,
                    name: "avx512",
                    run: Block::Micro(x86::kernel_8x32_avx512),
                });
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(MicroKernel {
                    mr: 6,
                    nr: 16,
                    name: "avx2",
                    run: Block::Micro(x86::kernel_6x16_avx2),
                });
            }
        }
        for mk in kernels {
            for &(m, k, n) in &[
                (1, 1, 1),
                (7, 3, 5),
                (9, 300, 33),
                (17, 513, 70),
                (8, 256, 32),
                (5, 40, 130),
            ] {
                let a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                    .collect();
                let b: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                    .collect();
                let mut c = vec![f32::NAN; m * n];
                let pa = pack_a(
                    mk,
                    m,
                    k,
                    MatRef {
                        data: &a,
                        offset: 0,
                        rs: k,
                        cs: 1,
                    },
                );
                let mut scratch = Vec::new();
                let bref = MatRef {
                    data: &b,
                    offset: 0,
                    rs: n,
                    cs: 1,
                };
                gemm_prepacked_a(mk, &pa, bref, n, &mut c, n, false, &mut scratch);
                for (x, y) in c.iter().zip(naive(m, k, n, &a, &b)) {
                    assert!(
                        (*x as f64 - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{} {m}x{k}x{n}: {x} vs {y}",
                        mk.name
                    );
                }
            }
        }
    }
}
