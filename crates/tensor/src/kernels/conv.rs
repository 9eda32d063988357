//! The one convolution kernel: im2col packed straight into GEMM panels, tile by tile, for
//! every rank (shapes arrive normalised to three spatial dims, see `ops::conv`).
//!
//! Work is split with rayon into independent tasks whose outputs never overlap:
//! - forward: (image, group, tile of output positions);
//! - input gradient: (image, group, range of input channels) — col2im of a channel range only
//!   writes those channels;
//! - weight gradient: (group, range of column rows), each summing over images and tiles.
//!
//! Each worker reuses one scratch buffer (at most `KC x NC` floats plus a column tile), so
//! memory does not grow with the batch. The GEMM inside a task runs on that task's thread,
//! so rayon's pool (sized by `RAYON_NUM_THREADS`) is the only source of threads.

use rayon::prelude::*;

use super::gemm::{
    KC, MatRef, MicroKernel, PackedA, ftz, gemm_packed, gemm_packed_raw, micro_kernel, pack_a, pack_b,
};
use crate::ops::conv::ConvGeom;

/// Output positions per forward tile: the packed B block (`KC x NC`) stays in L2.
const NC: usize = 256;

/// Raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}
// SAFETY: tasks built on SharedOut write provably disjoint index sets (see each use), so sending
// the pointer to other threads cannot create a data race.
unsafe impl Send for SharedOut {}
// SAFETY: as for Send: shared references only ever lead to disjoint writes.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn new(v: &mut [f32]) -> Self {
        SharedOut { ptr: v.as_mut_ptr(), len: v.len() }
    }
    /// The base pointer (a method, so closures capture the whole `Send` wrapper).
    fn ptr(&self) -> *mut f32 {
        self.ptr
    }
}

/// Decoded row `k` of the column matrix: input channel (within the group) and kernel tap.
#[derive(Clone, Copy)]
struct Tap {
    c: usize,
    kz: usize,
    ky: usize,
    kx: usize,
}

fn tap(g: &ConvGeom, k: usize) -> Tap {
    let [_, kh, kw] = g.k;
    let kvol = g.k_vol();
    let (c, r) = (k / kvol, k % kvol);
    Tap { c, kz: r / (kh * kw), ky: (r / kw) % kh, kx: r % kw }
}

/// Input coordinate hit by output `o` through tap `t` in one dim, if inside the input.
#[inline(always)]
fn in_coord(o: usize, t: usize, stride: usize, dil: usize, pad: usize, size: usize) -> Option<usize> {
    let pos = (o * stride + t * dil).checked_sub(pad)?;
    (pos < size).then_some(pos)
}

/// Range of `ox` whose input x lies inside `[0, w)` for tap `kx`.
fn valid_ox(g: &ConvGeom, kx: usize) -> (usize, usize) {
    let (s, d, p, w, ow) = (g.stride[2], g.dil[2], g.pad[2], g.in_sp[2], g.out_sp[2]);
    let off = kx * d;
    // x = ox*s + off - p >= 0  <=>  ox >= ceil((p - off) / s)
    let lo = if off >= p { 0 } else { (p - off).div_ceil(s) };
    // x <= w - 1  <=>  ox*s <= w - 1 + p - off
    let hi = if w + p <= off { 0 } else { ((w - 1 + p - off) / s + 1).min(ow) };
    (lo.min(ow), hi.max(lo.min(ow)))
}

/// One run of a column-matrix row: `len` consecutive columns starting at `col` (relative to
/// the tile) read input elements `src, src + step, ...` (relative to the image-group base), or
/// zeros when `src` is `None`.
struct Run {
    col: usize,
    len: usize,
    src: Option<usize>,
    step: usize,
}

/// Calls `f` for every run of row `k`, over output positions `p0 .. p0 + ncols`.
fn for_each_run(g: &ConvGeom, k: usize, p0: usize, ncols: usize, mut f: impl FnMut(Run)) {
    let t = tap(g, k);
    let [_, oh, ow] = g.out_sp;
    let [_, ih, iw] = g.in_sp;
    let plane = g.in_vol();
    let (lo, hi) = valid_ox(g, t.kx);
    let (sx, dx, px) = (g.stride[2], g.dil[2], g.pad[2]);
    let mut p = p0;
    let end = p0 + ncols;
    while p < end {
        let (oz, oy, ox0) = (p / (oh * ow), (p / ow) % oh, p % ow);
        let ox1 = ow.min(ox0 + (end - p));
        let col = p - p0;
        let z = in_coord(oz, t.kz, g.stride[0], g.dil[0], g.pad[0], g.in_sp[0]);
        let y = in_coord(oy, t.ky, g.stride[1], g.dil[1], g.pad[1], ih);
        match (z, y) {
            (Some(z), Some(y)) => {
                let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                if a > ox0 {
                    f(Run { col, len: a - ox0, src: None, step: 0 });
                }
                if b > a {
                    let x = a * sx + t.kx * dx - px;
                    let src = t.c * plane + (z * ih + y) * iw + x;
                    f(Run { col: col + a - ox0, len: b - a, src: Some(src), step: sx });
                }
                if ox1 > b {
                    f(Run { col: col + b.max(a) - ox0, len: ox1 - b.max(a), src: None, step: 0 });
                }
            }
            _ => f(Run { col, len: ox1 - ox0, src: None, step: 0 }),
        }
        p += ox1 - ox0;
    }
}

/// im2col of rows `k0 .. k0 + kc` and output positions `p0 .. p0 + ncols`, written in the
/// micro-kernel's B-panel format (`nr` columns per panel; missing columns are zero).
fn pack_cols(g: &ConvGeom, x: &[f32], k0: usize, kc: usize, p0: usize, ncols: usize, nr: usize, dst: &mut Vec<f32>) {
    let panels = ncols.div_ceil(nr);
    dst.clear();
    dst.resize(panels * kc * nr, 0.0);
    for kk in 0..kc {
        for_each_run(g, k0 + kk, p0, ncols, |run| {
            let Some(src) = run.src else { return }; // zeros are already there
            let mut col = run.col;
            let mut done = 0;
            while done < run.len {
                let (q, lane) = (col / nr, col % nr);
                let take = (nr - lane).min(run.len - done);
                let base = q * kc * nr + kk * nr + lane;
                let out = &mut dst[base..base + take];
                let from = src + done * run.step;
                if run.step == 1 {
                    for (o, &v) in out.iter_mut().zip(&x[from..from + take]) {
                        *o = ftz(v);
                    }
                } else {
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = ftz(x[from + i * run.step]);
                    }
                }
                col += take;
                done += take;
            }
        });
    }
}

/// Forward convolution into a new `(N, C_out, out_vol)` buffer.
pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let mk = micro_kernel();
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let mut out = vec![0.0f32; g.n * g.c_out * pvol];
    if out.is_empty() {
        return out;
    }
    let packed: Vec<PackedA> = (0..g.groups)
        .map(|grp| pack_a(mk, m, krows, MatRef { data: w, offset: grp * m * krows, rs: krows, cs: 1 }))
        .collect();
    let nc = NC.min(pvol.div_ceil(mk.nr) * mk.nr);
    let tiles = pvol.div_ceil(nc);
    let shared = SharedOut::new(&mut out);
    let cg = g.c_in / g.groups;
    (0..g.n * g.groups * tiles).into_par_iter().for_each_init(Vec::new, |scratch, task| {
        let (img, grp, tile) = (task / (g.groups * tiles), (task / tiles) % g.groups, task % tiles);
        let p0 = tile * nc;
        let ncols = nc.min(pvol - p0);
        let x_base = (img * g.c_in + grp * cg) * g.in_vol();
        let xg = &x[x_base..x_base + cg * g.in_vol()];
        let c_off = (img * g.c_out + grp * m) * pvol + p0;
        let mut k0 = 0;
        while k0 < krows {
            let kc = KC.min(krows - k0);
            pack_cols(g, xg, k0, kc, p0, ncols, mk.nr, scratch);
            // SAFETY: this task alone writes rows grp*m .. grp*m+m, columns p0 .. p0+ncols of
            // image img; (m-1)*pvol + ncols elements from c_off stay inside `out`.
            unsafe { gemm_into(mk, &packed[grp], k0, kc, scratch, ncols, shared, c_off, pvol, k0 > 0) };
            k0 += kc;
        }
        if let Some(b) = bias {
            for r in 0..m {
                let v = b[grp * m + r];
                // SAFETY: the same disjoint block as above, one row at a time.
                let row = unsafe { std::slice::from_raw_parts_mut(shared.ptr().add(c_off + r * pvol), ncols) };
                row.iter_mut().for_each(|o| *o += v);
            }
        }
    });
    out
}

/// `gemm_packed` on a block of a shared output.
///
/// # Safety
/// No other thread reads or writes rows `0..a.m` x columns `0..n` (row stride `rs`) from
/// `off` while this runs, and that block lies inside the buffer.
unsafe fn gemm_into(
    mk: MicroKernel,
    a: &PackedA,
    k0: usize,
    kc: usize,
    b: &[f32],
    n: usize,
    out: SharedOut,
    off: usize,
    rs: usize,
    accumulate: bool,
) {
    let span = if a.m == 0 || n == 0 { 0 } else { (a.m - 1) * rs + n };
    assert!(off + span <= out.len);
    // SAFETY: the block is in bounds by the assert and exclusive by the caller's contract;
    // other tasks' blocks interleave with it (other columns of the same rows) but no reference
    // to them is formed: the kernel writes through the raw pointer, only inside the block.
    unsafe { gemm_packed_raw(mk, a, k0, kc, b, n, out.ptr().add(off), rs, accumulate) };
}

/// Input gradient `(N, C_in, in_vol)`: `dcol = W^T dY` tile by tile, scattered back by col2im.
pub(crate) fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let mk = micro_kernel();
    let (m, krows, pvol, kvol) = (g.m(), g.k_rows(), g.out_vol(), g.k_vol());
    let cg = g.c_in / g.groups;
    let mut dx = vec![0.0f32; g.n * g.c_in * g.in_vol()];
    if dx.is_empty() {
        return dx;
    }
    // Channel chunks: enough tasks to feed every thread when the batch is small.
    let threads = rayon::current_num_threads();
    let want = (2 * threads).div_ceil(g.n * g.groups).max(1);
    let chunk = cg.div_ceil(want.min(cg));
    let chunks = cg.div_ceil(chunk);
    let nc = NC.min(pvol.div_ceil(mk.nr) * mk.nr);
    let shared = SharedOut::new(&mut dx);
    (0..g.n * g.groups * chunks).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(bpanels, dcol), task| {
            let (img, grp, ch) = (task / (g.groups * chunks), (task / chunks) % g.groups, task % chunks);
            let (c0, c1) = (ch * chunk, (ch * chunk + chunk).min(cg));
            let (r0, r1) = (c0 * kvol, c1 * kvol);
            // A = W_g^T restricted to rows r0..r1: element (r, j) = w[(grp*m + j)*krows + r].
            let wt = MatRef { data: w, offset: grp * m * krows + r0, rs: 1, cs: krows };
            let pa = pack_a(mk, r1 - r0, m, wt);
            let x_base = (img * g.c_in + grp * cg) * g.in_vol();
            // SAFETY: this task alone owns channels grp*cg + c0 .. grp*cg + c1 of image img,
            // a contiguous block of dx.
            let dxg = unsafe {
                std::slice::from_raw_parts_mut(shared.ptr().add(x_base + c0 * g.in_vol()), (c1 - c0) * g.in_vol())
            };
            let mut p0 = 0;
            while p0 < pvol {
                let ncols = nc.min(pvol - p0);
                let dyt = MatRef { data: dy, offset: (img * g.c_out + grp * m) * pvol + p0, rs: pvol, cs: 1 };
                dcol.clear();
                dcol.resize((r1 - r0) * ncols, 0.0);
                let mut k0 = 0;
                while k0 < m {
                    let kc = KC.min(m - k0);
                    pack_b(mk, kc, ncols, MatRef { offset: dyt.offset + k0 * pvol, ..dyt }, bpanels);
                    gemm_packed(mk, &pa, k0, kc, bpanels, ncols, dcol, ncols, k0 > 0);
                    k0 += kc;
                }
                col2im(g, dcol, r0, r1, p0, ncols, c0, dxg);
                p0 += ncols;
            }
        },
    );
    dx
}

/// Scatter-adds column rows `r0..r1` (row-major, `ncols` wide) into `dx`, which holds the
/// group's channels from `c0` on. The exact adjoint of `pack_cols`, by the same runs.
fn col2im(g: &ConvGeom, dcol: &[f32], r0: usize, r1: usize, p0: usize, ncols: usize, c0: usize, dx: &mut [f32]) {
    let shift = c0 * g.in_vol();
    for k in r0..r1 {
        let row = &dcol[(k - r0) * ncols..(k - r0 + 1) * ncols];
        for_each_run(g, k, p0, ncols, |run| {
            let Some(src) = run.src else { return };
            let base = src - shift;
            let vals = &row[run.col..run.col + run.len];
            if run.step == 1 {
                dx[base..base + run.len].iter_mut().zip(vals).for_each(|(d, v)| *d += v);
            } else {
                for (i, v) in vals.iter().enumerate() {
                    dx[base + i * run.step] += v;
                }
            }
        });
    }
}

/// Weight gradient `(C_out, C_in/groups, k...)`: `dW_g += dY_g col^T`, summed over images.
pub(crate) fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mk = micro_kernel();
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let cg = g.c_in / g.groups;
    let mut dw = vec![0.0f32; g.c_out * krows];
    if g.n == 0 || pvol == 0 {
        return dw;
    }
    let threads = rayon::current_num_threads();
    let want = (2 * threads).div_ceil(g.groups).max(1);
    let chunk = (krows.div_ceil(want)).div_ceil(mk.nr) * mk.nr;
    let chunks = krows.div_ceil(chunk);
    let nc = NC.min(pvol);
    let shared = SharedOut::new(&mut dw);
    (0..g.groups * chunks).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(cols, bpanels), task| {
            let (grp, ch) = (task / chunks, task % chunks);
            let (r0, r1) = (ch * chunk, (ch * chunk + chunk).min(krows));
            let c_off = grp * m * krows + r0;
            let mut first = true;
            for img in 0..g.n {
                let x_base = (img * g.c_in + grp * cg) * g.in_vol();
                let xg = &x[x_base..x_base + cg * g.in_vol()];
                let mut p0 = 0;
                while p0 < pvol {
                    let ncols = nc.min(pvol - p0);
                    // A = dY tile (m x ncols); B = col^T (ncols x (r1-r0)).
                    let dyt = MatRef { data: dy, offset: (img * g.c_out + grp * m) * pvol + p0, rs: pvol, cs: 1 };
                    let pa = pack_a(mk, m, ncols, dyt);
                    // Row-major column tile: one "panel" as wide as the tile.
                    pack_cols(g, xg, r0, r1 - r0, p0, ncols, ncols, cols);
                    let colt = MatRef { data: cols, offset: 0, rs: 1, cs: ncols };
                    let mut k0 = 0;
                    while k0 < ncols {
                        let kc = KC.min(ncols - k0);
                        pack_b(mk, kc, r1 - r0, MatRef { offset: k0, ..colt }, bpanels);
                        // SAFETY: this task alone writes columns r0..r1 of rows grp*m..grp*m+m.
                        unsafe { gemm_into(mk, &pa, k0, kc, bpanels, r1 - r0, shared, c_off, krows, !first) };
                        first = false;
                        k0 += kc;
                    }
                    p0 += ncols;
                }
            }
        },
    );
    dw
}
