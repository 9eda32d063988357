//! The bounds-checked door to the GEMM used by `matmul`: the workspace's own packed kernels
//! (AVX-512 / AVX2, as for convolution) when C is row-major, `matrixmultiply::sgemm` for any
//! other output layout and on CPUs without those kernels.

/// A strided matrix operand: element (i, j) at `offset + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct Strided {
    pub(crate) offset: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

fn reach(rows: usize, cols: usize, s: Strided) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        s.offset + (rows - 1) * s.rs + (cols - 1) * s.cs + 1
    }
}

/// `c = a * b` for an `m x k` times `k x n` product, all three strided.
///
/// # Panics
/// When an operand's reachable elements exceed its slice, or C's strides could alias two
/// elements (internal invariants: callers derive strides from valid layouts).
pub(crate) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: Strided,
    b: &[f32],
    sb: Strided,
    c: &mut [f32],
    sc: Strided,
) {
    assert!(reach(m, k, sa) <= a.len() && reach(k, n, sb) <= b.len() && reach(m, n, sc) <= c.len());
    assert!(m <= 1 || n <= 1 || (sc.rs != 0 && sc.cs != 0 && sc.rs != sc.cs));
    if m == 0 || n == 0 {
        return;
    }
    let mk = super::gemm::micro_kernel();
    if sc.cs == 1 && sc.rs >= n && !mk.is_matrixmultiply() {
        // Row-major C: the packed micro-kernels the convolutions use (on AVX-512 about twice
        // matrixmultiply's AVX2 kernel; Gram matrices of style transfer live here).
        use super::gemm::{MatRef, gemm_prepacked_a, pack_a};
        let pa = pack_a(
            mk,
            m,
            k,
            MatRef {
                data: a,
                offset: sa.offset,
                rs: sa.rs,
                cs: sa.cs,
            },
        );
        let mut scratch = super::scratch::take(0);
        gemm_prepacked_a(
            mk,
            &pa,
            MatRef {
                data: b,
                offset: sb.offset,
                rs: sb.rs,
                cs: sb.cs,
            },
            n,
            &mut c[sc.offset..],
            sc.rs,
            false,
            &mut scratch,
        );
        super::scratch::give(scratch);
        return;
    }
    // SAFETY: every index a, b and c can reach was checked against its slice above; c is
    // exclusively borrowed and its strides do not alias; beta = 0 so c need not hold finite
    // values; matrixmultiply accepts any element strides.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr().add(sa.offset),
            sa.rs as isize,
            sa.cs as isize,
            b.as_ptr().add(sb.offset),
            sb.rs as isize,
            sb.cs as isize,
            0.0,
            c.as_mut_ptr().add(sc.offset),
            sc.rs as isize,
            sc.cs as isize,
        );
    }
}
