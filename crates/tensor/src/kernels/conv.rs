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
    KC, MatRef, MicroKernel, PackedA, ftz, gemm_packed, gemm_packed_raw, micro_kernel, pack_a,
    pack_b,
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
        SharedOut {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
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
    Tap {
        c,
        kz: r / (kh * kw),
        ky: (r / kw) % kh,
        kx: r % kw,
    }
}

/// Input coordinate hit by output `o` through tap `t` in one dim, if inside the input.
#[inline(always)]
fn in_coord(
    o: usize,
    t: usize,
    stride: usize,
    dil: usize,
    pad: usize,
    size: usize,
) -> Option<usize> {
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
    let hi = if w + p <= off {
        0
    } else {
        ((w - 1 + p - off) / s + 1).min(ow)
    };
    (lo.min(ow), hi.max(lo.min(ow)))
}

/// A piece of one output row inside a tile: output row (`oz`, `oy`), columns `ox0 .. ox0 + len`,
/// which are tile columns `col .. col + len`. Computed once per tile, shared by every row `k`.
#[derive(Clone, Copy)]
struct RowSeg {
    oz: usize,
    oy: usize,
    ox0: usize,
    len: usize,
    col: usize,
}

fn tile_segments(g: &ConvGeom, p0: usize, ncols: usize, segs: &mut Vec<RowSeg>) {
    let [_, oh, ow] = g.out_sp;
    segs.clear();
    let (mut p, end) = (p0, p0 + ncols);
    while p < end {
        let (oz, oy, ox0) = (p / (oh * ow), (p / ow) % oh, p % ow);
        let len = (ow - ox0).min(end - p);
        segs.push(RowSeg {
            oz,
            oy,
            ox0,
            len,
            col: p - p0,
        });
        p += len;
    }
}

/// One run of a column-matrix row: `len` tile columns from `col` read input elements
/// `src, src + step, ...` (relative to the image-group base). Columns not covered by any run
/// are zeros (padding).
struct Run {
    col: usize,
    len: usize,
    src: usize,
    step: usize,
}

/// Calls `f` for every run of input data in row `k` of the tile described by `segs`.
#[inline(always)]
fn for_each_run(g: &ConvGeom, k: usize, segs: &[RowSeg], mut f: impl FnMut(Run)) {
    let t = tap(g, k);
    let [_, ih, iw] = g.in_sp;
    let plane = t.c * g.in_vol();
    let (lo, hi) = valid_ox(g, t.kx);
    let (sx, x_off) = (g.stride[2], t.kx * g.dil[2]);
    for s in segs {
        let Some(z) = in_coord(s.oz, t.kz, g.stride[0], g.dil[0], g.pad[0], g.in_sp[0]) else {
            continue;
        };
        let Some(y) = in_coord(s.oy, t.ky, g.stride[1], g.dil[1], g.pad[1], ih) else {
            continue;
        };
        let (a, b) = (lo.max(s.ox0), hi.min(s.ox0 + s.len));
        if b > a {
            let x = a * sx + x_off - g.pad[2];
            let src = plane + (z * ih + y) * iw + x;
            f(Run {
                col: s.col + a - s.ox0,
                len: b - a,
                src,
                step: sx,
            });
        }
    }
}

/// Where `im2col_tile` writes element (row `kk`, tile column `col`).
#[derive(Clone, Copy)]
enum Dest {
    /// GEMM B panels `nr` columns wide (`nr == ncols` gives a plain row-major tile).
    BPanels { nr: usize },
    /// GEMM A panels of `mr` rows over `ncols` columns (the column matrix as the left operand).
    APanels { mr: usize },
}

/// im2col of rows `k0 .. k0 + kc` for the tile `segs` (`ncols` columns), written in `dest`'s
/// format into `dst`, which is resized and zeroed (missing rows/columns stay zero).
fn im2col_tile(
    g: &ConvGeom,
    x: &[f32],
    k0: usize,
    kc: usize,
    segs: &[RowSeg],
    ncols: usize,
    dest: Dest,
    dst: &mut Vec<f32>,
) {
    let len = match dest {
        Dest::BPanels { nr } => ncols.div_ceil(nr) * kc * nr,
        Dest::APanels { mr } => kc.div_ceil(mr) * mr * ncols,
    };
    dst.clear();
    dst.resize(len, 0.0);
    for kk in 0..kc {
        for_each_run(g, k0 + kk, segs, |run| match dest {
            Dest::BPanels { nr } => {
                let (mut col, mut done) = (run.col, 0);
                while done < run.len {
                    let (q, lane) = (col / nr, col % nr);
                    let take = (nr - lane).min(run.len - done);
                    let base = q * kc * nr + kk * nr + lane;
                    let out = &mut dst[base..base + take];
                    let from = run.src + done * run.step;
                    if run.step == 1 {
                        for (o, &v) in out.iter_mut().zip(&x[from..from + take]) {
                            *o = ftz(v);
                        }
                    } else {
                        for (o, &v) in out.iter_mut().zip(x[from..].iter().step_by(run.step)) {
                            *o = ftz(v);
                        }
                    }
                    col += take;
                    done += take;
                }
            }
            Dest::APanels { mr } => {
                let base = (kk / mr) * mr * ncols + run.col * mr + kk % mr;
                let out = dst[base..].iter_mut().step_by(mr).take(run.len);
                for (o, &v) in out.zip(x[run.src..].iter().step_by(run.step)) {
                    *o = ftz(v);
                }
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
        .map(|grp| {
            pack_a(
                mk,
                m,
                krows,
                MatRef {
                    data: w,
                    offset: grp * m * krows,
                    rs: krows,
                    cs: 1,
                },
            )
        })
        .collect();
    let nc = NC.min(pvol.div_ceil(mk.nr) * mk.nr);
    let tiles = pvol.div_ceil(nc);
    let shared = SharedOut::new(&mut out);
    let cg = g.c_in / g.groups;
    (0..g.n * g.groups * tiles).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(scratch, segs), task| {
            let (img, grp, tile) = (
                task / (g.groups * tiles),
                (task / tiles) % g.groups,
                task % tiles,
            );
            let p0 = tile * nc;
            let ncols = nc.min(pvol - p0);
            tile_segments(g, p0, ncols, segs);
            let x_base = (img * g.c_in + grp * cg) * g.in_vol();
            let xg = &x[x_base..x_base + cg * g.in_vol()];
            let c_off = (img * g.c_out + grp * m) * pvol + p0;
            let mut k0 = 0;
            while k0 < krows {
                let kc = KC.min(krows - k0);
                im2col_tile(
                    g,
                    xg,
                    k0,
                    kc,
                    segs,
                    ncols,
                    Dest::BPanels { nr: mk.nr },
                    scratch,
                );
                // SAFETY: this task alone writes rows grp*m .. grp*m+m, columns p0 .. p0+ncols of
                // image img; (m-1)*pvol + ncols elements from c_off stay inside `out`.
                unsafe {
                    gemm_into(
                        mk,
                        &packed[grp],
                        k0,
                        kc,
                        scratch,
                        ncols,
                        shared,
                        c_off,
                        pvol,
                        k0 > 0,
                    )
                };
                k0 += kc;
            }
            if let Some(b) = bias {
                for r in 0..m {
                    let v = b[grp * m + r];
                    // SAFETY: the same disjoint block as above, one row at a time.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(shared.ptr().add(c_off + r * pvol), ncols)
                    };
                    row.iter_mut().for_each(|o| *o += v);
                }
            }
        },
    );
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
    let span = if a.m == 0 || n == 0 {
        0
    } else {
        (a.m - 1) * rs + n
    };
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
    // The dcol tile (rows x nc) is written by the GEMM and read back by col2im: keep it
    // within about 256 KiB so both passes hit L2.
    let rows_max = chunk * kvol;
    let nc_fit = ((DCOL_TILE_FLOATS / rows_max.max(1)) / mk.nr).max(1) * mk.nr;
    let nc = NC.min(nc_fit).min(pvol.div_ceil(mk.nr) * mk.nr);
    let shared = SharedOut::new(&mut dx);
    (0..g.n * g.groups * chunks).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(bpanels, dcol, segs), task| {
            let (img, grp, ch) = (
                task / (g.groups * chunks),
                (task / chunks) % g.groups,
                task % chunks,
            );
            let (c0, c1) = (ch * chunk, (ch * chunk + chunk).min(cg));
            let (r0, r1) = (c0 * kvol, c1 * kvol);
            // A = W_g^T restricted to rows r0..r1: element (r, j) = w[(grp*m + j)*krows + r].
            let wt = MatRef {
                data: w,
                offset: grp * m * krows + r0,
                rs: 1,
                cs: krows,
            };
            let pa = pack_a(mk, r1 - r0, m, wt);
            let x_base = (img * g.c_in + grp * cg) * g.in_vol();
            // SAFETY: this task alone owns channels grp*cg + c0 .. grp*cg + c1 of image img,
            // a contiguous block of dx.
            let dxg = unsafe {
                std::slice::from_raw_parts_mut(
                    shared.ptr().add(x_base + c0 * g.in_vol()),
                    (c1 - c0) * g.in_vol(),
                )
            };
            let mut p0 = 0;
            while p0 < pvol {
                let ncols = nc.min(pvol - p0);
                tile_segments(g, p0, ncols, segs);
                let dyt = MatRef {
                    data: dy,
                    offset: (img * g.c_out + grp * m) * pvol + p0,
                    rs: pvol,
                    cs: 1,
                };
                dcol.clear();
                dcol.resize((r1 - r0) * ncols, 0.0);
                let mut k0 = 0;
                while k0 < m {
                    let kc = KC.min(m - k0);
                    pack_b(
                        mk,
                        kc,
                        ncols,
                        MatRef {
                            offset: dyt.offset + k0 * pvol,
                            ..dyt
                        },
                        bpanels,
                    );
                    gemm_packed(mk, &pa, k0, kc, bpanels, ncols, dcol, ncols, k0 > 0);
                    k0 += kc;
                }
                col2im(g, dcol, r0, r1, segs, ncols, c0, dxg);
                p0 += ncols;
            }
        },
    );
    dx
}

/// Floats in one input-gradient column tile (256 KiB).
const DCOL_TILE_FLOATS: usize = 64 * 1024;

/// Scatter-adds column rows `r0..r1` (row-major, `ncols` wide) into `dx`, which holds the
/// group's channels from `c0` on. The exact adjoint of `im2col_tile`, by the same runs.
fn col2im(
    g: &ConvGeom,
    dcol: &[f32],
    r0: usize,
    r1: usize,
    segs: &[RowSeg],
    ncols: usize,
    c0: usize,
    dx: &mut [f32],
) {
    let shift = c0 * g.in_vol();
    for k in r0..r1 {
        let row = &dcol[(k - r0) * ncols..(k - r0 + 1) * ncols];
        for_each_run(g, k, segs, |run| {
            let base = run.src - shift;
            let vals = &row[run.col..run.col + run.len];
            if run.step == 1 {
                dx[base..base + run.len]
                    .iter_mut()
                    .zip(vals)
                    .for_each(|(d, v)| *d += v);
            } else {
                for (d, v) in dx[base..].iter_mut().step_by(run.step).zip(vals) {
                    *d += v;
                }
            }
        });
    }
}

/// Weight gradient `(C_out, C_in/groups, k...)`: `dW_g^T += col dY_g^T`, summed over images.
///
/// The reduction runs over output positions, which are contiguous in both the column matrix
/// and dY; the column matrix (the larger operand) is therefore im2col'ed straight into A
/// panels, and only dY (C_out/groups rows) is transposed while packing B.
pub(crate) fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mk = micro_kernel();
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let cg = g.c_in / g.groups;
    let mut dwt = vec![0.0f32; g.groups * krows * m];
    if g.n > 0 && pvol > 0 {
        let threads = rayon::current_num_threads();
        let want = (2 * threads).div_ceil(g.groups).max(1);
        let chunk = krows.div_ceil(want).div_ceil(mk.mr) * mk.mr;
        let chunks = krows.div_ceil(chunk);
        let nc = KC.min(pvol);
        // Each task owns rows r0..r1 of its group's dW^T (krows x m, row-major): disjoint
        // contiguous blocks, so plain chunked slices suffice.
        let mut blocks: Vec<&mut [f32]> = Vec::with_capacity(g.groups * chunks);
        for grp_block in dwt.chunks_mut(krows * m) {
            let mut rest = grp_block;
            for ch in 0..chunks {
                let rows = chunk.min(krows - ch * chunk);
                let (head, tail) = rest.split_at_mut(rows * m);
                blocks.push(head);
                rest = tail;
            }
        }
        blocks.into_par_iter().enumerate().for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(apanels, bpanels, segs), (task, out)| {
                let (grp, ch) = (task / chunks, task % chunks);
                let (r0, r1) = (ch * chunk, (ch * chunk + chunk).min(krows));
                let mut first = true;
                for img in 0..g.n {
                    let x_base = (img * g.c_in + grp * cg) * g.in_vol();
                    let xg = &x[x_base..x_base + cg * g.in_vol()];
                    let mut p0 = 0;
                    while p0 < pvol {
                        let ncols = nc.min(pvol - p0);
                        tile_segments(g, p0, ncols, segs);
                        im2col_tile(
                            g,
                            xg,
                            r0,
                            r1 - r0,
                            segs,
                            ncols,
                            Dest::APanels { mr: mk.mr },
                            apanels,
                        );
                        let pa = PackedA {
                            data: std::mem::take(apanels),
                            m: r1 - r0,
                            k: ncols,
                        };
                        // B = dY_g^T (ncols x m): element (pp, j) = dy[(img*c_out + grp*m + j)*pvol + p0 + pp].
                        let dyt = MatRef {
                            data: dy,
                            offset: (img * g.c_out + grp * m) * pvol + p0,
                            rs: 1,
                            cs: pvol,
                        };
                        pack_b(mk, ncols, m, dyt, bpanels);
                        gemm_packed(mk, &pa, 0, ncols, bpanels, m, out, m, !first);
                        *apanels = pa.data;
                        first = false;
                        p0 += ncols;
                    }
                }
            },
        );
    }
    // dW^T (krows x m per group) -> dW (m x krows per group).
    let mut dw = vec![0.0f32; g.c_out * krows];
    for grp in 0..g.groups {
        let src = &dwt[grp * krows * m..(grp + 1) * krows * m];
        let dst = &mut dw[grp * m * krows..(grp + 1) * m * krows];
        for r in 0..krows {
            for j in 0..m {
                dst[j * krows + r] = src[r * m + j];
            }
        }
    }
    dw
}
