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

#[cfg(target_arch = "x86_64")]
use super::gemm::x86::ColGroup;
use super::gemm::{
    KC, MatRef, MicroKernel, PackedA, ftz, gemm_packed, gemm_packed_raw, gemm_prepacked_a,
    micro_kernel, pack_a, pack_b,
};
use super::scratch;
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

/// For every row `k` of the column matrix, the offset of its tap from a window's origin in the
/// (padded) input of one image and group: `c * in_vol + kz dz ih iw + ky dy iw + kx dx`.
fn tap_offsets(g: &ConvGeom) -> Vec<usize> {
    let [_, ih, iw] = g.in_sp;
    (0..g.k_rows())
        .map(|k| {
            let t = tap(g, k);
            t.c * g.in_vol() + (t.kz * g.dil[0] * ih + t.ky * g.dil[1]) * iw + t.kx * g.dil[2]
        })
        .collect()
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

/// The input with its zero padding written out (pad 0 in the returned geometry), so every
/// window read is in bounds. Returns `None` when there is no padding to write.
fn materialise_padding(g: &ConvGeom, x: &[f32]) -> Option<(ConvGeom, Vec<f32>)> {
    let mut padded = [0usize; 3];
    for d in 0..3 {
        let reach = (g.out_sp[d] - 1) * g.stride[d] + (g.k[d] - 1) * g.dil[d] + 1;
        padded[d] = reach.max(g.pad[d] + g.in_sp[d]);
    }
    // Padding after the input is implicit in the output size: check the reach, not just `pad`.
    if g.pad == [0; 3] && padded == g.in_sp && !plane_stride_aliases(g.in_vol()) {
        return None;
    }
    // Widen rows until a channel plane is not a near-multiple of 4 KiB: otherwise the rows
    // of all channels in one window map to the same few L1 sets and evict each other.
    while plane_stride_aliases(padded.iter().product()) {
        padded[2] += 1;
    }
    let [id, ih, iw] = g.in_sp;
    let [pd, ph, pw] = padded;
    let planes = g.n * g.c_in;
    let mut out = scratch::take(planes * pd * ph * pw);
    let copy_plane = |(plane, dst): (usize, &mut [f32])| {
        let src = &x[plane * id * ih * iw..(plane + 1) * id * ih * iw];
        for z in 0..id {
            for y in 0..ih {
                let d0 = ((z + g.pad[0]) * ph + y + g.pad[1]) * pw + g.pad[2];
                dst[d0..d0 + iw].copy_from_slice(&src[(z * ih + y) * iw..(z * ih + y + 1) * iw]);
            }
        }
    };
    // A copy is memory-bound: parallel only when it is large.
    if out.len() >= 1 << 20 {
        out.par_chunks_mut(pd * ph * pw)
            .enumerate()
            .for_each(copy_plane);
    } else {
        out.chunks_mut(pd * ph * pw)
            .enumerate()
            .for_each(copy_plane);
    }
    Some((
        ConvGeom {
            in_sp: padded,
            pad: [0; 3],
            ..g.clone()
        },
        out,
    ))
}

/// True when a plane of `floats` floats puts consecutive channels within 512 bytes of the
/// same L1 set position (4 KiB period). Planes under 4 KiB sit side by side and cannot.
fn plane_stride_aliases(floats: usize) -> bool {
    let r = (floats * 4) % 4096;
    floats * 4 >= 4096 && !(512..=4096 - 512).contains(&r)
}

/// Below this many flops a kernel runs its tasks on the calling thread: handing work to the
/// pool and waiting for it costs more than the work. `TENSOR_PAR_MIN_FLOPS` overrides it
/// (tests set 0 to drive every shape through the parallel path).
fn par_min_flops() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("TENSOR_PAR_MIN_FLOPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4 << 20)
    })
}

/// Runs `f(0..tasks)`, on the rayon pool unless the whole job is small.
fn run_tasks(tasks: usize, flops: usize, f: impl Fn(usize) + Sync + Send) {
    run_tasks_init(tasks, flops, || (), |(), t| f(t));
}

/// As [`run_tasks`], with per-worker scratch state made by `init` (one per worker, reused
/// across that worker's tasks).
fn run_tasks_init<S>(
    tasks: usize,
    flops: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize) + Sync + Send,
) {
    if flops < par_min_flops() || tasks <= 1 {
        let mut state = init();
        (0..tasks).for_each(|t| f(&mut state, t));
    } else {
        (0..tasks).into_par_iter().for_each_init(init, f);
    }
}

/// Segments per column group of `lanes` positions for output rows `ow` wide: 1 (groups
/// aligned to rows) unless that wastes more than an eighth of the lanes, then dense groups
/// that span up to 2 rows (`ow >= lanes`) or 3 rows (`lanes / 2 <= ow < lanes`). Narrower
/// rows stay row-aligned.
fn segments_for_width(ow: usize, lanes: usize) -> usize {
    let padded = ow.div_ceil(lanes) * lanes;
    if (padded - ow) * 8 <= padded || ow < lanes / 2 {
        1
    } else if ow >= lanes {
        2
    } else {
        3
    }
}

/// Lanes `first .. first + len` set.
fn lane_mask(first: usize, len: usize) -> u16 {
    (((1u32 << len) - 1) << first) as u16
}

/// Lanes per column group of the indirect convolution kernel for this micro-kernel's
/// instruction set, or `None` where there is no indirect kernel (the portable kernel).
fn indirect_lanes(mk: MicroKernel) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::gemm::x86::{Avx2, Avx512, Width};
        match (mk.mr, mk.nr) {
            (8, 32) => return Some(Avx512::LANES),
            (6, 16) => return Some(Avx2::LANES),
            _ => {}
        }
    }
    let _ = mk;
    None
}

/// The indirect kernel for `mk`'s instruction set, specialised for `rows` rows of C,
/// `segments` loads per group and, with one segment, groups whose lanes are all in use.
#[cfg(target_arch = "x86_64")]
fn dispatch_indirect(
    mk: MicroKernel,
    rows: usize,
    segments: usize,
    full: bool,
) -> super::gemm::x86::IndirectKernel {
    use super::gemm::x86::{kernel_indirect_avx2 as k2, kernel_indirect_avx512 as k5};
    macro_rules! by_rows {
        ($k:ident, $s:literal, $full:literal, [$($r:literal),*]) => {
            match rows {
                $($r => $k::<$r, $s, $full>,)*
                _ => $k::<1, $s, $full>,
            }
        };
    }
    macro_rules! by_segments {
        ($k:ident, [$($r:literal),*]) => {
            match (segments, full) {
                (1, true) => by_rows!($k, 1, true, [$($r),*]),
                (1, false) => by_rows!($k, 1, false, [$($r),*]),
                (2, _) => by_rows!($k, 2, false, [$($r),*]),
                _ => by_rows!($k, 3, false, [$($r),*]),
            }
        };
    }
    if mk.mr == 8 {
        // AVX-512's masked loads cost no more than plain ones: one set of kernels.
        match segments {
            1 => by_rows!(k5, 1, false, [8, 7, 6, 5, 4, 3, 2]),
            2 => by_rows!(k5, 2, false, [8, 7, 6, 5, 4, 3, 2]),
            _ => by_rows!(k5, 3, false, [8, 7, 6, 5, 4, 3, 2]),
        }
    } else {
        by_segments!(k2, [6, 5, 4, 3, 2])
    }
}

/// Packed weights larger than this (bytes) are walked one 8-row block at a time across all
/// of a task's output columns, instead of all blocks per column pair.
const WEIGHTS_L2_BUDGET: usize = 512 << 10;

/// How many rows of the reduction (taps) the indirect kernel takes per pass over C. On
/// AVX-512, all of them (as measured in docs/PERFORMANCE.md). On AVX2 the reduction is cut so
/// that a column pair's window rows stay in L1 (3/4 of 32 KiB, two groups whose lanes may
/// straddle two cache lines each: 128 B per tap) and one slice of the weights
/// (`m x slice x 4 B`) in a 256 KiB L2 while every row block meets them: a deep 3x3 layer's
/// whole reduction (512 x 9 taps) would otherwise stream the image from L3 once per 6 rows.
fn reduction_slice(lanes: usize, m_padded: usize, krows: usize) -> usize {
    const L1_BYTES: usize = 24 << 10;
    const L2_BYTES: usize = 256 << 10;
    if lanes == 16 || krows == 0 {
        return krows.max(1);
    }
    let by_l1 = L1_BYTES / (2 * 2 * 64);
    let by_l2 = L2_BYTES / (m_padded * 4);
    let widest = by_l1.min(by_l2).max(16);
    // Equal slices: the last one is not a short remainder.
    krows.div_ceil(krows.div_ceil(widest))
}

/// The weights of every group packed as the GEMM's A operand (C_out/groups x K each).
pub(crate) fn pack_weights(mk: MicroKernel, g: &ConvGeom, w: &[f32]) -> Vec<PackedA> {
    let (m, krows) = (g.m(), g.k_rows());
    (0..g.groups)
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
        .collect()
}

/// The weights of the input-gradient convolution, packed directly: per group, row `ci` and
/// column `(co, t)` hold `w[co][ci][kvol - 1 - t]` (taps reversed, channels swapped).
fn pack_flipped_weights(mk: MicroKernel, g: &ConvGeom, w: &[f32]) -> Vec<PackedA> {
    let (m, cg, kvol, mr) = (g.m(), g.c_in / g.groups, g.k_vol(), mk.mr);
    let k = m * kvol;
    (0..g.groups)
        .map(|grp| {
            let mut data = scratch::take(cg.div_ceil(mr) * mr * k);
            let pack_panel = |(p, panel): (usize, &mut [f32])| {
                for r in 0..mr.min(cg - p * mr) {
                    let ci = p * mr + r;
                    for co in 0..m {
                        let src = &w[((grp * m + co) * cg + ci) * kvol..][..kvol];
                        for (t, &v) in src.iter().rev().enumerate() {
                            panel[(co * kvol + t) * mr + r] = ftz(v);
                        }
                    }
                }
            };
            if data.len() >= 1 << 20 {
                data.par_chunks_mut(k * mr).enumerate().for_each(pack_panel);
            } else {
                data.chunks_mut(k * mr).enumerate().for_each(pack_panel);
            }
            PackedA { data, m: cg, k }
        })
        .collect()
}

/// Forward convolution with the indirect kernel (AVX-512 or AVX2): B is read from the image
/// itself, so nothing is packed but the weights. Needs stride 1 along W (rows of a window are
/// contiguous).
#[cfg(target_arch = "x86_64")]
fn forward_indirect(g: &ConvGeom, x: &[f32], packed: &[PackedA], bias: Option<&[f32]>) -> Vec<f32> {
    let mk = micro_kernel();
    let lanes = indirect_lanes(mk).expect("forward_indirect runs only where the kernel exists");
    let mr = mk.mr;
    debug_assert!(g.stride[2] == 1);
    let padded = materialise_padding(g, x);
    let (g, x) = match &padded {
        Some((pg, px)) => (pg, px.as_slice()),
        None => (g, x),
    };
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let [_, ih, iw] = g.in_sp;
    let in_vol = g.in_vol();
    let cg = g.c_in / g.groups;
    let taps = tap_offsets(g);

    let m_padded = m.div_ceil(mr) * mr;
    let mut biases = vec![0.0f32; g.groups * m_padded];
    if let Some(b) = bias {
        for grp in 0..g.groups {
            let base = grp * m_padded;
            biases[base..base + m].copy_from_slice(&b[grp * m..(grp + 1) * m]);
        }
    }
    // Column groups of every image in one list, so that small images share tasks and pairs.
    let [_, oh, ow] = g.out_sp;
    // One output row per image (1D): groups never span rows, dense or not.
    let segments = if pvol == ow {
        1
    } else {
        segments_for_width(ow, lanes)
    };
    let mut groups: Vec<ColGroup> = Vec::with_capacity(g.n * (pvol.div_ceil(lanes) + 1));
    let window = |img: usize, p: usize| {
        let (oz, oy, ox) = (p / (oh * ow), (p / ow) % oh, p % ow);
        img * g.c_in * in_vol + (oz * g.stride[0] * ih + oy * g.stride[1]) * iw + ox
    };
    for img in 0..g.n {
        let out_base = img * g.c_out * pvol;
        if segments == 1 {
            // Groups aligned to output rows: one contiguous input run per group.
            for row in 0..pvol / ow {
                for ox0 in (0..ow).step_by(lanes) {
                    let mask = lane_mask(0, lanes.min(ow - ox0));
                    let p = row * ow + ox0;
                    groups.push(ColGroup {
                        seg_pos: [window(img, p), 0, 0],
                        seg_mask: [mask, 0, 0],
                        out: out_base + p,
                        out_mask: mask,
                    });
                }
            }
        } else {
            // Dense groups: `lanes` consecutive positions, split where output rows end.
            for p0 in (0..pvol).step_by(lanes) {
                let used = lanes.min(pvol - p0);
                let mut grp = ColGroup {
                    seg_pos: [0; 3],
                    seg_mask: [0; 3],
                    out: out_base + p0,
                    out_mask: lane_mask(0, used),
                };
                let (mut lane, mut seg) = (0, 0);
                while lane < used {
                    let p = p0 + lane;
                    let len = (ow - p % ow).min(used - lane);
                    grp.seg_pos[seg] = window(img, p).wrapping_sub(lane);
                    grp.seg_mask[seg] = lane_mask(lane, len);
                    lane += len;
                    seg += 1;
                }
                debug_assert!(seg <= segments);
                groups.push(grp);
            }
        }
    }
    if groups.len() % 2 == 1 {
        groups.push(ColGroup {
            seg_pos: [0; 3],
            seg_mask: [0; 3],
            out: 0,
            out_mask: 0,
        });
    }
    let pairs = groups.len() / 2;
    let per_task = (NC / (2 * lanes)).min(pairs).max(1);
    let chunks = pairs.div_ceil(per_task);
    // The kernel writes every output element (the column groups cover every position of every
    // image, the row blocks every channel), so the buffer is not zeroed first: that pass cost
    // as much as a small layer. It stays at length 0 until all writes are done.
    let total = g.n * g.c_out * pvol;
    let mut out = crate::storage::for_overwrite(total);
    let shared = SharedOut {
        ptr: out.as_mut_ptr(),
        len: total,
    };
    let flops = 2 * g.n * g.c_out * pvol * krows;
    // Few output positions (a deep layer at batch 1): split the output channels too, so that
    // every thread gets work.
    let m_blocks = m.div_ceil(mr);
    let m_split = (4 * rayon::current_num_threads())
        .div_ceil(g.groups * chunks)
        .clamp(1, m_blocks);
    let per_split = m_blocks.div_ceil(m_split);
    let m_split = m_blocks.div_ceil(per_split);
    let k_slice = reduction_slice(lanes, m_padded, krows);
    let weights_outer = m * k_slice * 4 > WEIGHTS_L2_BUDGET;
    let all_lanes = lane_mask(0, lanes);
    run_tasks(g.groups * chunks * m_split, flops, |task| {
        let (grp, ch, ms) = (
            task / (chunks * m_split),
            (task / m_split) % chunks,
            task % m_split,
        );
        let xg = &x[grp * cg * in_vol..];
        let c_base = grp * m * pvol;
        let my_pairs =
            &groups[2 * ch * per_task..(2 * (ch * per_task + per_task)).min(groups.len())];
        let my_blocks = ms * per_split..((ms + 1) * per_split).min(m_blocks);
        let run = |pair: &[ColGroup], p: usize, k0: usize| {
            let kc = k_slice.min(krows - k0);
            let a = &packed[grp].data[p * krows * mr + k0 * mr..][..kc * mr];
            let b = &biases[grp * m_padded + p * mr..][..mr];
            let rows = mr.min(m - p * mr);
            let full = segments == 1 && pair.iter().all(|g| g.out_mask == all_lanes);
            // SAFETY: the kernel's instruction set was detected. `a` holds kc*mr floats,
            // `taps[k0..]` at least kc offsets. Every lane a segment mask enables reads
            // xg[taps[k] + window origin of its output position]: in bounds, as the padded
            // geometry covers every window; `full` only when all lanes are enabled. C rows
            // p*mr .. p*mr+rows at the pair's columns belong to this task alone (tasks split
            // groups, column chunks, row blocks) and lie inside `out`; later slices read
            // them after the first wrote them.
            unsafe {
                dispatch_indirect(mk, rows, segments, full)(
                    kc,
                    a.as_ptr(),
                    xg.as_ptr(),
                    taps[k0..].as_ptr(),
                    [pair[0], pair[1]],
                    b.as_ptr(),
                    shared.ptr().add(c_base + p * mr * pvol),
                    pvol,
                    k0 > 0,
                )
            };
        };
        for k0 in (0..krows).step_by(k_slice) {
            if weights_outer {
                // Large weights: each row block stays in L2 while it meets every pair.
                for p in my_blocks.clone() {
                    my_pairs.chunks_exact(2).for_each(|pair| run(pair, p, k0));
                }
            } else {
                // Small weights: one pair's window rows (k_slice x 2 groups) stay in L1 while
                // the packed weights stream from L2.
                for pair in my_pairs.chunks_exact(2) {
                    my_blocks.clone().for_each(|p| run(pair, p, k0));
                }
            }
        }
    });
    // SAFETY: the capacity is `total` (with_capacity), and the tasks above wrote all `total`
    // elements through `shared` (every (image, channel, position) belongs to exactly one
    // task's column pairs and row blocks; each lane of each group is stored).
    unsafe { out.set_len(total) };
    if let Some((_, buf)) = padded {
        scratch::give(buf);
    }
    out
}

/// Largest growth in multiply-adds [`forward_space_to_depth`] accepts (a 7 x 7 kernel at
/// stride 2 becomes 4 x 4 over 4 phases: 64 / 49 = 1.31).
const SPACE_TO_DEPTH_MAX_GROWTH: f64 = 1.35;

/// A 2D convolution with equal strides `s > 1` along H and W (the 7 x 7 / 2 stem of a ResNet)
/// rewritten as a stride-1 convolution, so that it runs on the indirect kernel instead of
/// packing an im2col of strided reads: the input's `s x s` phases become channels
/// (`x2[c s² + a s + b][i][j] = x[c][i s + a][j s + b]`, zero outside) and the kernel is split
/// the same way (`w2[o][c s² + a s + b][u][v] = w[o][c][u s + a][v s + b]`, zero past its
/// edge). Exact: the same products, plus some with zeros. `None` when the shape does not
/// qualify (groups, dilation, 3D, unequal strides) or the zero taps would cost more than
/// [`SPACE_TO_DEPTH_MAX_GROWTH`].
#[cfg(target_arch = "x86_64")]
fn forward_space_to_depth(
    mk: MicroKernel,
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Option<Vec<f32>> {
    let s = g.stride[1];
    let [_, kh, kw] = g.k;
    if g.groups != 1
        || s < 2
        || g.stride != [1, s, s]
        || g.dil != [1; 3]
        || g.k[0] != 1
        || g.in_sp[0] != 1
        || g.n * g.c_out * g.out_vol() == 0
    {
        return None;
    }
    let (kh2, kw2) = (kh.div_ceil(s), kw.div_ceil(s));
    let growth = (kh2 * kw2 * s * s) as f64 / (kh * kw) as f64;
    if growth > SPACE_TO_DEPTH_MAX_GROWTH {
        return None;
    }
    let [_, oh, ow] = g.out_sp;
    let [_, ih, iw] = g.in_sp;
    let (h2, w2) = (oh - 1 + kh2, ow - 1 + kw2);
    let (c, c2) = (g.c_in, g.c_in * s * s);
    // The phases of the (implicitly zero-padded) input.
    let mut xs = scratch::take(g.n * c2 * h2 * w2);
    xs.par_chunks_mut(h2 * w2)
        .enumerate()
        .for_each(|(plane, dst)| {
            let (img, ch2) = (plane / c2, plane % c2);
            let (ch, a, b) = (ch2 / (s * s), (ch2 / s) % s, ch2 % s);
            let src = &x[(img * c + ch) * ih * iw..(img * c + ch + 1) * ih * iw];
            for i in 0..h2 {
                let y = (i * s + a) as isize - g.pad[1] as isize;
                let row = &mut dst[i * w2..(i + 1) * w2];
                if y < 0 || y >= ih as isize {
                    row.fill(0.0);
                    continue;
                }
                let src_row = &src[y as usize * iw..(y as usize + 1) * iw];
                for (j, o) in row.iter_mut().enumerate() {
                    let xx = (j * s + b) as isize - g.pad[2] as isize;
                    *o = if xx >= 0 && xx < iw as isize {
                        src_row[xx as usize]
                    } else {
                        0.0
                    };
                }
            }
        });
    let mut ws = vec![0f32; g.c_out * c2 * kh2 * kw2];
    for o in 0..g.c_out {
        for ch in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let (u, a, v, b) = (ky / s, ky % s, kx / s, kx % s);
                    let ch2 = ch * s * s + a * s + b;
                    ws[((o * c2 + ch2) * kh2 + u) * kw2 + v] =
                        w[((o * c + ch) * kh + ky) * kw + kx];
                }
            }
        }
    }
    let g2 = ConvGeom {
        c_in: c2,
        in_sp: [1, h2, w2],
        k: [1, kh2, kw2],
        stride: [1; 3],
        pad: [0; 3],
        ..g.clone()
    };
    let out = forward_indirect(&g2, &xs, &pack_weights(mk, &g2, &ws), bias);
    scratch::give(xs);
    Some(out)
}

/// Output rows narrower than this go through [`forward_small_maps`]: the per-image kernels
/// would fill a fraction of their lanes (a 4 x 4 map is 16 columns of a 32-wide panel).
const SMALL_MAP_WIDTH: usize = 8;

/// Forward convolution of a batch of small maps as one GEMM: the column matrices of all
/// images side by side (`K x N*out_vol`), times the weights, then scattered to
/// `(N, C_out, out_vol)`. Deep layers of a network (4 x 4 maps, hundreds of channels) keep
/// every lane busy this way.
fn forward_small_maps(
    mk: MicroKernel,
    g: &ConvGeom,
    x: &[f32],
    packed: &[PackedA],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let cols = g.n * pvol;
    let cg = g.c_in / g.groups;
    let mut out = crate::storage::zeroed(g.n * g.c_out * pvol);
    let mut segs = Vec::new();
    tile_segments(g, 0, pvol, &mut segs);
    let mut b = vec![0f32; krows * cols];
    for grp in 0..g.groups {
        // Column matrix of each image (row-major krows x pvol), then interleaved by row.
        let blocks: Vec<Vec<f32>> = (0..g.n)
            .into_par_iter()
            .map(|img| {
                let x_base = (img * g.c_in + grp * cg) * g.in_vol();
                let mut block = Vec::new();
                im2col_tile(
                    g,
                    &x[x_base..x_base + cg * g.in_vol()],
                    0,
                    krows,
                    &segs,
                    pvol,
                    Dest::BPanels { nr: pvol },
                    &mut block,
                );
                block
            })
            .collect();
        b.par_chunks_mut(cols).enumerate().for_each(|(k, row)| {
            for (img, block) in blocks.iter().enumerate() {
                row[img * pvol..(img + 1) * pvol].copy_from_slice(&block[k * pvol..(k + 1) * pvol]);
            }
        });
        // Column blocks of NC in parallel; each scatters its own columns (distinct (image,
        // position) pairs) into the output.
        let shared = SharedOut::new(&mut out);
        let b = &b;
        run_tasks_init(
            cols.div_ceil(NC),
            2 * m * krows * cols,
            || (Vec::new(), Vec::new()),
            |(scratch, c), task| {
                let c0 = task * NC;
                let width = NC.min(cols - c0);
                c.clear();
                c.resize(m * width, 0.0);
                gemm_prepacked_a(
                    mk,
                    &packed[grp],
                    MatRef {
                        data: b,
                        offset: c0,
                        rs: cols,
                        cs: 1,
                    },
                    width,
                    c,
                    width,
                    false,
                    scratch,
                );
                for r in 0..m {
                    let add = bias.map_or(0.0, |b| b[grp * m + r]);
                    for (j, &v) in c[r * width..(r + 1) * width].iter().enumerate() {
                        let (img, p) = ((c0 + j) / pvol, (c0 + j) % pvol);
                        let at = (img * g.c_out + grp * m + r) * pvol + p;
                        debug_assert!(at < shared.len);
                        // SAFETY: column c0 + j belongs to this task alone, so element `at`
                        // (image img, channel grp*m + r, position p) is written by no other
                        // task; `at` < N * C_out * pvol = the output's length.
                        unsafe { *shared.ptr().add(at) = v + add };
                    }
                }
            },
        );
    }
    out
}

/// Forward convolution into a new `(N, C_out, out_vol)` buffer; `prepacked` is
/// [`pack_weights`] of `w` when the caller keeps it (fixed weights), else it is packed here.
/// Depthwise convolution (one input and one output channel per group), computed directly:
/// a channel's plane is a sum of `k_vol` shifted, scaled copies of its input plane. Through
/// the GEMM path each group would be a 1-row matrix product with a `k_vol`-long reduction,
/// most of its time spent packing (MobileNet's depthwise layers took 35 % of a pass).
fn forward_depthwise(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (pvol, ivol, kvol) = (g.out_vol(), g.in_vol(), g.k_vol());
    let mut out = crate::storage::zeroed(g.n * g.c_out * pvol);
    if out.is_empty() {
        return out;
    }
    let flops = 2 * out.len() * kvol;
    let shared = SharedOut::new(&mut out);
    run_tasks_init(g.n * g.c_out, flops, Vec::new, |phases, plane| {
        let ch = plane % g.c_out;
        let xin = &x[plane * ivol..(plane + 1) * ivol];
        let wk = &w[ch * kvol..(ch + 1) * kvol];
        // SAFETY: task `plane` alone writes output plane `plane` (pvol elements from
        // plane * pvol, inside `out`).
        let y = unsafe { std::slice::from_raw_parts_mut(shared.ptr().add(plane * pvol), pvol) };
        let b = bias.map_or(0.0, |b| b[ch]);
        #[cfg(target_arch = "x86_64")]
        if super::simd::use_avx2() {
            // SAFETY: use_avx2 checked AVX2 and FMA at run time.
            unsafe { depthwise_plane_avx2(g, xin, wk, b, y, phases) };
            return;
        }
        depthwise_plane(g, xin, wk, b, y, phases);
    });
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_plane_avx2(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: f32,
    y: &mut [f32],
    phases: &mut Vec<f32>,
) {
    depthwise_plane(g, x, w, bias, y, phases);
}

/// One plane of [`forward_depthwise`]. A strided row is first split into its `stride` phases
/// (`x[j * s + p]` at `phase[p][j]`), so every tap reads a contiguous run and the inner loop
/// vectorises.
#[inline(always)]
fn depthwise_plane(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: f32,
    y: &mut [f32],
    phases: &mut Vec<f32>,
) {
    let [od, oh, ow] = g.out_sp;
    let [id, ih, iw] = g.in_sp;
    let s = g.stride[2];
    let plen = iw.div_ceil(s);
    let rows = id * ih;
    // Stride 1 reads the input itself (one phase of `iw`).
    let phased: &[f32] = if s == 1 {
        x
    } else {
        phases.clear();
        phases.resize(rows * s * plen, 0.0);
        for r in 0..rows {
            let src = &x[r * iw..(r + 1) * iw];
            for p in 0..s {
                let dst = &mut phases[(r * s + p) * plen..][..plen];
                for (d, v) in dst.iter_mut().zip(src.iter().skip(p).step_by(s)) {
                    *d = *v;
                }
            }
        }
        phases
    };
    y.fill(bias);
    for oz in 0..od {
        for kz in 0..g.k[0] {
            let Some(iz) = in_coord(oz, kz, g.stride[0], g.dil[0], g.pad[0], id) else {
                continue;
            };
            for oy in 0..oh {
                let row = &mut y[(oz * oh + oy) * ow..][..ow];
                for ky in 0..g.k[1] {
                    let Some(iy) = in_coord(oy, ky, g.stride[1], g.dil[1], g.pad[1], ih) else {
                        continue;
                    };
                    let r = iz * ih + iy;
                    for kx in 0..g.k[2] {
                        let (a, b) = valid_ox(g, kx);
                        if a >= b {
                            continue;
                        }
                        let wv = w[(kz * g.k[1] + ky) * g.k[2] + kx];
                        // Input column of output a: a * s + kx * dil - pad >= 0.
                        let first = a * s + kx * g.dil[2] - g.pad[2];
                        let src = &phased[(r * s + first % s) * plen + first / s..][..b - a];
                        for (o, v) in row[a..b].iter_mut().zip(src) {
                            *o += wv * v;
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    prepacked: Option<&[PackedA]>,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    // Depthwise on wide rows: short rows (a 32 x 32 map) run better as the GEMM path's rows.
    if g.groups == g.c_in && g.c_out == g.c_in && g.c_in > 1 && g.out_sp[2] >= 64 {
        return forward_depthwise(g, x, w, bias);
    }
    let mk = micro_kernel();
    #[cfg(target_arch = "x86_64")]
    if indirect_lanes(mk).is_some()
        && let Some(out) = forward_space_to_depth(mk, g, x, w, bias)
    {
        return out;
    }
    let packed_here;
    let packed = match prepacked {
        Some(p) => p,
        None => {
            packed_here = pack_weights(mk, g, w);
            &packed_here[..]
        }
    };
    if g.out_sp[2] < SMALL_MAP_WIDTH && g.n > 1 && g.n * g.c_out * g.out_vol() > 0 {
        return forward_small_maps(mk, g, x, packed, bias);
    }
    #[cfg(target_arch = "x86_64")]
    if indirect_lanes(mk).is_some() && g.stride[2] == 1 && g.n * g.c_out * g.out_vol() > 0 {
        return forward_indirect(g, x, packed, bias);
    }
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let mut out = crate::storage::zeroed(g.n * g.c_out * pvol);
    if out.is_empty() {
        return out;
    }
    let nc = NC.min(pvol.div_ceil(mk.nr) * mk.nr);
    let tiles = pvol.div_ceil(nc);
    let shared = SharedOut::new(&mut out);
    let cg = g.c_in / g.groups;
    let flops = 2 * g.n * g.c_out * pvol * krows;
    run_tasks_init(
        g.n * g.groups * tiles,
        flops,
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
    #[cfg(target_arch = "x86_64")]
    if let Some(dx) = backward_input_as_forward(g, dy, w) {
        return dx;
    }
    let (m, krows, pvol, kvol) = (g.m(), g.k_rows(), g.out_vol(), g.k_vol());
    let cg = g.c_in / g.groups;
    let mut dx = crate::storage::zeroed(g.n * g.c_in * g.in_vol());
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
    let flops = 2 * g.n * g.c_out * pvol * krows;
    run_tasks_init(
        g.n * g.groups * chunks,
        flops,
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

/// For stride 1, the input gradient is itself a convolution: dY, padded by
/// `dilation * (k - 1) - pad`, correlated with the spatially flipped weights whose in/out
/// channels are swapped per group. That runs on the fast forward kernel with no col2im.
/// Returns `None` where it does not apply (stride > 1, padding wider than the kernel span, few
/// input channels with a long reduction, or no indirect kernel on this CPU).
#[cfg(target_arch = "x86_64")]
fn backward_input_as_forward(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Option<Vec<f32>> {
    let mk = micro_kernel();
    let fits = (0..3).all(|d| g.stride[d] == 1 && g.pad[d] <= g.dil[d] * (g.k[d] - 1));
    // With fewer input channels than a panel's rows the kernel computes few rows per load of
    // the image and becomes load-bound; the packed path wins unless the reduction is short.
    let rows_ok = g.c_in / g.groups >= mk.mr || g.m() * g.k_vol() <= 1024;
    // On AVX2 a long reduction (256 or 512 channels x 9 taps) ran 8-13 % slower this way than
    // through col2im (docs/PERFORMANCE.md, AVX2); up to 32 x 27 it ran faster.
    let reduction_ok = indirect_lanes(mk) == Some(16) || g.m() * g.k_vol() <= 1024;
    if !(indirect_lanes(mk).is_some() && fits && rows_ok && reduction_ok)
        || g.n * g.c_in * g.in_vol() == 0
    {
        return None;
    }
    let packed = pack_flipped_weights(mk, g, w);
    let pad: [usize; 3] = std::array::from_fn(|d| g.dil[d] * (g.k[d] - 1) - g.pad[d]);
    let tg = ConvGeom {
        n: g.n,
        c_in: g.c_out,
        c_out: g.c_in,
        groups: g.groups,
        in_sp: g.out_sp,
        k: g.k,
        stride: [1; 3],
        dil: g.dil,
        pad,
        out_sp: g.in_sp,
    };
    Some(forward_indirect(&tg, dy, &packed, None))
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
    #[cfg(target_arch = "x86_64")]
    if indirect_lanes(mk).is_some() && g.stride[2] == 1 && g.n * g.out_vol() > 0 {
        return backward_weight_direct(mk, g, x, dy);
    }
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let cg = g.c_in / g.groups;
    let mut dwt = crate::storage::zeroed(g.groups * krows * m);
    if g.n > 0 && pvol > 0 {
        let threads = rayon::current_num_threads();
        let want = (2 * threads).div_ceil(g.groups).max(1);
        let chunk = krows.div_ceil(want).div_ceil(mk.mr) * mk.mr;
        let chunks = krows.div_ceil(chunk);
        let nc = KC.min(pvol);
        // Each task owns rows r0..r1 of its group's dW^T (krows x m, row-major): disjoint
        // contiguous blocks.
        let flops = 2 * g.n * g.c_out * pvol * krows;
        let shared = SharedOut::new(&mut dwt);
        run_tasks_init(
            g.groups * chunks,
            flops,
            || (Vec::new(), Vec::new(), Vec::new()),
            |(apanels, bpanels, segs), task| {
                let (grp, ch) = (task / chunks, task % chunks);
                let (r0, r1) = (ch * chunk, (ch * chunk + chunk).min(krows));
                let start = grp * krows * m + r0 * m;
                assert!(start + (r1 - r0) * m <= shared.len);
                // SAFETY: rows r0..r1 of group grp's dW^T belong to this task alone, and the
                // assert keeps them inside the buffer.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(shared.ptr().add(start), (r1 - r0) * m)
                };
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
                        let mut pa = PackedA {
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
                        *apanels = std::mem::take(&mut pa.data);
                        first = false;
                        p0 += ncols;
                    }
                }
            },
        );
    }
    transpose_groups(g, &dwt)
}

/// Weight gradient with the dot-product kernel (stride 1 along W): every (dY row, tap) pair is
/// a dot product over output positions, read in place from dY and the padded input. Nothing is
/// packed, so no transpose of the column matrix is ever written.
#[cfg(target_arch = "x86_64")]
fn backward_weight_direct(mk: MicroKernel, g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    use super::gemm::x86::{kernel_nt_avx2, kernel_nt_avx512};
    if mk.mr == 8 {
        backward_weight_dot::<4>(g, x, dy, kernel_nt_avx512)
    } else {
        backward_weight_dot::<3>(g, x, dy, kernel_nt_avx2)
    }
}

/// The dot-product kernel for `I` rows of dY by 4 taps (see `dot_rows` in `gemm.rs`).
#[cfg(target_arch = "x86_64")]
type DotKernel<const I: usize> =
    unsafe fn([*const f32; I], *const f32, [usize; 4], &[(usize, usize)], usize, *mut f32, usize);

/// [`backward_weight_direct`] with blocks of `I` dY rows.
#[cfg(target_arch = "x86_64")]
fn backward_weight_dot<const I: usize>(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    kernel: DotKernel<I>,
) -> Vec<f32> {
    let padded = materialise_padding(g, x);
    let (g, x) = match &padded {
        Some((pg, px)) => (pg, px.as_slice()),
        None => (g, x),
    };
    let (m, krows, pvol) = (g.m(), g.k_rows(), g.out_vol());
    let [_, ih, iw] = g.in_sp;
    let [od, oh, ow] = g.out_sp;
    let in_vol = g.in_vol();
    let cg = g.c_in / g.groups;
    let taps = tap_offsets(g);
    // Output rows as (offset in a dY plane, window origin in an input plane).
    let out_rows: Vec<(usize, usize)> = (0..od * oh)
        .map(|r| {
            let (oz, oy) = (r / oh, r % oh);
            (r * ow, (oz * g.stride[0] * ih + oy * g.stride[1]) * iw)
        })
        .collect();
    // Rows per kernel call: about 2048 positions, so the horizontal sums at the end of a call
    // are rare while the 4 + 4 rows it streams stay in L1.
    let rows_per_call = (2048 / ow).max(1);
    let threads = rayon::current_num_threads();
    let want = (2 * threads).div_ceil(g.groups).max(1);
    let chunk = krows.div_ceil(want).div_ceil(4) * 4;
    let chunks = krows.div_ceil(chunk);
    // Each task computes dW[group rows][r0..r1] into its own tile (dY rows x taps, padded to
    // whole I x 4 blocks); the tiles are copied into dW at the end.
    let flops = 2 * g.n * g.c_out * pvol * krows;
    let mut dw = crate::storage::zeroed(g.c_out * krows);
    let shared = SharedOut::new(&mut dw);
    run_tasks(g.groups * chunks, flops, |task| {
        let (grp, ch) = (task / chunks, task % chunks);
        let (r0, r1) = (ch * chunk, (ch * chunk + chunk).min(krows));
        let kj = (r1 - r0).div_ceil(4) * 4;
        let mut acc = scratch::take(m.div_ceil(I) * I * kj);
        for img in 0..g.n {
            let xg = &x[(img * g.c_in + grp * cg) * in_vol..];
            let dyg = &dy[(img * g.c_out + grp * m) * pvol..];
            for rows in out_rows.chunks(rows_per_call) {
                for i0 in (0..m).step_by(I) {
                    // Rows past m and taps past r1 repeat the last valid one; their sums
                    // land in the padding rows / columns of `acc` and are dropped.
                    let d4: [*const f32; I] =
                        std::array::from_fn(|i| dyg[(i0 + i).min(m - 1) * pvol..].as_ptr());
                    for j0 in (0..r1 - r0).step_by(4) {
                        let t4: [usize; 4] =
                            std::array::from_fn(|j| taps[(r0 + j0 + j).min(r1 - 1)]);
                        // SAFETY: the kernel's instruction set was detected. Each dY row
                        // pointer starts a full plane of pvol floats and every listed output
                        // row offset + ow <= pvol; each tap plus window origin plus ow stays
                        // inside the padded input of this image and group (the padded
                        // geometry covers every window); acc has at least i0 + I rows of
                        // kj >= j0 + 4 columns.
                        unsafe {
                            kernel(
                                d4,
                                xg.as_ptr(),
                                t4,
                                rows,
                                ow,
                                acc.as_mut_ptr().add(i0 * kj + j0),
                                kj,
                            )
                        };
                    }
                }
            }
        }
        for i in 0..m {
            let start = (grp * m + i) * krows + r0;
            assert!(start + (r1 - r0) <= shared.len);
            // SAFETY: columns r0..r1 of the group's rows belong to this task alone (tasks split
            // groups and tap ranges), and the assert keeps the row segment inside `dw`.
            let dst = unsafe { std::slice::from_raw_parts_mut(shared.ptr().add(start), r1 - r0) };
            dst.copy_from_slice(&acc[i * kj..i * kj + (r1 - r0)]);
        }
        scratch::give(acc);
    });
    if let Some((_, buf)) = padded {
        scratch::give(buf);
    }
    dw
}

/// dW^T (krows x m per group) -> dW (m x krows per group).
fn transpose_groups(g: &ConvGeom, dwt: &[f32]) -> Vec<f32> {
    let (m, krows) = (g.m(), g.k_rows());
    let mut dw = crate::storage::zeroed(g.c_out * krows);
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
