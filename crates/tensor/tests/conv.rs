//! Convolution (forward, three gradients, transposed) against the naive f64 references in
//! `testkit`, on random shapes, strides, dilations, paddings (every mode), and groups.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::{ConvOptions, Error, FixedConvWeight, Padding, PaddingMode, Tensor};
use testkit::{
    Arr, RefConv, RefPad, assert_rel_close, ref_conv, ref_conv_grads, ref_conv_transpose,
};

/// f32 accumulation over at most a few thousand terms stays far below this (see testkit docs).
const TOL: f64 = 1e-4;

#[derive(Debug, Clone)]
struct Case {
    x_shape: Vec<usize>,
    w_shape: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    pad: Vec<(usize, usize)>,
    groups: usize,
    mode: PaddingMode,
    bias: bool,
    seed: u64,
}

impl Case {
    fn opts(&self) -> ConvOptions {
        ConvOptions::default()
            .stride(&self.stride)
            .dilation(&self.dilation)
            .padding(Padding::Explicit(self.pad.clone()))
            .padding_mode(self.mode)
            .groups(self.groups)
    }
    fn reference(&self) -> RefConv {
        RefConv {
            stride: self.stride.clone(),
            dilation: self.dilation.clone(),
            pad: self.pad.clone(),
            groups: self.groups,
            mode: match self.mode {
                PaddingMode::Zeros => RefPad::Zeros,
                PaddingMode::Reflect => RefPad::Reflect,
                PaddingMode::Replicate => RefPad::Replicate,
                PaddingMode::Circular => RefPad::Circular,
            },
        }
    }
}

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> (Tensor, Arr) {
    let data: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    (
        Tensor::from_vec(data.clone(), shape).unwrap(),
        Arr::from_f32(&data, shape),
    )
}

/// Per spatial dim: (kernel, stride, dilation, pad before, pad after, extra input size).
fn dim() -> impl Strategy<Value = (usize, usize, usize, usize, usize, usize)> {
    (
        1usize..=5,
        1usize..=3,
        1usize..=3,
        0usize..=3,
        0usize..=3,
        0usize..=4,
    )
}

fn case(modes: &'static [PaddingMode]) -> impl Strategy<Value = Case> {
    (
        1usize..=3,
        1usize..=3,
        1usize..=3,
        1usize..=3,
        1usize..=3,
        0..modes.len(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_flat_map(move |(s, n, groups, cg, mg, mode, bias, seed)| {
            prop::collection::vec(dim(), s).prop_map(move |dims| {
                let mode = modes[mode];
                let mut x_shape = vec![n, groups * cg];
                let mut w_shape = vec![groups * mg, cg];
                let (mut stride, mut dilation, mut pad) = (vec![], vec![], vec![]);
                for &(k, st, dl, pb, pa, extra) in &dims {
                    let span = dl * (k - 1) + 1;
                    let size = span.saturating_sub(pb + pa).max(1) + extra;
                    let (pb, pa) = match mode {
                        PaddingMode::Reflect => (pb.min(size - 1), pa.min(size - 1)),
                        PaddingMode::Circular => (pb.min(size), pa.min(size)),
                        _ => (pb, pa),
                    };
                    let size = size.max(span.saturating_sub(pb + pa));
                    x_shape.push(size);
                    w_shape.push(k);
                    stride.push(st);
                    dilation.push(dl);
                    pad.push((pb, pa));
                }
                Case {
                    x_shape,
                    w_shape,
                    stride,
                    dilation,
                    pad,
                    groups,
                    mode,
                    bias,
                    seed,
                }
            })
        })
}

const ALL_MODES: &[PaddingMode] = &[
    PaddingMode::Zeros,
    PaddingMode::Reflect,
    PaddingMode::Replicate,
    PaddingMode::Circular,
];

/// The forward pass of a case against the reference.
fn forward_matches(c: &Case) -> Result<(), TestCaseError> {
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let (x, xa) = random(&c.x_shape, &mut rng);
    let (w, wa) = random(&c.w_shape, &mut rng);
    let (b, ba) = random(&[c.w_shape[0]], &mut rng);
    let bias = c.bias.then_some(&b);
    let y = x.conv(&w, bias, &c.opts()).unwrap();
    let (want, mag) = ref_conv(&xa, &wa, c.bias.then_some(&ba.data[..]), &c.reference());
    prop_assert_eq!(y.shape(), &want.shape[..]);
    assert_rel_close("conv forward", &y.to_vec(), &want.data, &mag.data, TOL);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conv_forward_matches_reference(c in case(ALL_MODES)) {
        forward_matches(&c)?;
    }

    /// A fixed weight packed once gives `conv`'s result bit for bit, on its first input and on
    /// a second one of another size and batch (the packing does not depend on the input).
    #[test]
    fn fixed_weight_conv_equals_conv(c in case(ALL_MODES)) {
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        let (w, _) = random(&c.w_shape, &mut rng);
        let (b, _) = random(&[c.w_shape[0]], &mut rng);
        let bias = c.bias.then_some(&b);
        let fixed = FixedConvWeight::new(w.clone(), c.groups);
        let mut wider = c.x_shape.clone();
        let last = wider.len() - 1;
        wider[last] += 10;
        wider[0] = 2;
        for shape in [&c.x_shape, &wider] {
            let (x, _) = random(shape, &mut rng);
            let want = x.conv(&w, bias, &c.opts()).unwrap();
            let got = x.conv_fixed(&fixed, bias, &c.opts()).unwrap();
            prop_assert_eq!(got.shape(), want.shape());
            prop_assert_eq!(got.to_vec(), want.to_vec());
        }
    }

    /// Batches of rows at least 8 wide: the per-image kernels (narrower maps of a batch take
    /// the one-GEMM small-map path, which the cases above mostly reach).
    #[test]
    fn wide_rows_in_batches_match_reference(c in case(ALL_MODES).prop_map(|mut c| {
        let last = c.x_shape.len() - 1;
        c.x_shape[last] += 10;
        c.x_shape[0] = c.x_shape[0].max(2);
        c
    })) {
        forward_matches(&c)?;
    }

    /// Large kernels at stride 2 or 3 (a ResNet stem's 7 x 7 / 2), which the forward pass
    /// rewrites as stride-1 convolutions over the input's phases; unequal strides and groups
    /// keep the other paths.
    #[test]
    fn large_strided_kernels_match_reference(
        n in 1usize..=3, cin in 1usize..=4, cout in 1usize..=5, kh in 6usize..=9, kw in 6usize..=9,
        s in 2usize..=3, s_w in 2usize..=3, pad in 0usize..=3, eh in 0usize..=12, ew in 0usize..=12,
        groups in 1usize..=2, bias: bool, seed: u64,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (cin, cout) = (cin * groups, cout * groups);
        let x_shape = [n, cin, kh + eh, kw + ew];
        let w_shape = [cout, cin / groups, kh, kw];
        let (x, xa) = random(&x_shape, &mut rng);
        let (w, wa) = random(&w_shape, &mut rng);
        let (b, ba) = random(&[cout], &mut rng);
        let opts = ConvOptions::default().stride(&[s, s_w]).pad(pad).groups(groups);
        let y = x.conv(&w, bias.then_some(&b), &opts).unwrap();
        let refp = RefConv {
            stride: vec![s, s_w],
            dilation: vec![1, 1],
            pad: vec![(pad, pad); 2],
            groups,
            mode: RefPad::Zeros,
        };
        let (want, mag) = ref_conv(&xa, &wa, bias.then_some(&ba.data[..]), &refp);
        prop_assert_eq!(y.shape(), &want.shape[..]);
        assert_rel_close("large strided conv", &y.to_vec(), &want.data, &mag.data, TOL);
    }

    /// Depthwise convolutions (groups = input = output channels, MobileNet's), which on rows
    /// of 64 outputs or more take their own direct kernel: every mode, stride, dilation and
    /// padding, 1D to 3D.
    #[test]
    fn depthwise_conv_matches_reference(c in case(ALL_MODES), ch in 2usize..=12) {
        let mut c = c;
        c.groups = ch;
        c.x_shape[1] = ch;
        c.w_shape[0] = ch;
        c.w_shape[1] = 1;
        forward_matches(&c)?;
        // Rows of at least 64 outputs take the direct kernel.
        let last = c.x_shape.len() - 1;
        c.x_shape[last] += 64 * c.stride[c.stride.len() - 1] + 17;
        forward_matches(&c)?;
    }

    #[test]
    fn conv_gradients_match_reference(c in case(ALL_MODES)) {
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        let (x, xa) = random(&c.x_shape, &mut rng);
        let (w, wa) = random(&c.w_shape, &mut rng);
        let y_shape = x.conv(&w, None, &c.opts()).unwrap().shape().to_vec();
        let (g, ga) = random(&y_shape, &mut rng);
        let dx = Tensor::conv_backward_input(&g, &w, &c.x_shape, &c.opts()).unwrap();
        let dw = Tensor::conv_backward_weight(&x, &g, &c.w_shape, &c.opts()).unwrap();
        let db = Tensor::conv_backward_bias(&g).unwrap();
        let (rdx, rdxm, rdw, rdwm) = ref_conv_grads(&xa, &wa, &ga, &c.reference());
        assert_rel_close("conv dx", &dx.to_vec(), &rdx.data, &rdxm.data, TOL);
        assert_rel_close("conv dw", &dw.to_vec(), &rdw.data, &rdwm.data, TOL);
        // Bias gradient: the sum of grad_out over batch and space, per channel.
        let c_out = y_shape[1];
        let per: usize = y_shape[2..].iter().product();
        let (mut rdb, mut rdbm) = (vec![0.0f64; c_out], vec![0.0f64; c_out]);
        for (i, &v) in ga.data.iter().enumerate() {
            rdb[(i / per) % c_out] += v;
            rdbm[(i / per) % c_out] += v.abs();
        }
        assert_rel_close("conv db", &db.to_vec(), &rdb, &rdbm, TOL);
    }

    #[test]
    fn conv_transpose_matches_reference(c in case(&[PaddingMode::Zeros]), op_seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        // A transposed conv's weight is (C_in, C_out/groups, k...): swap the roles.
        let (c_in, c_out_g) = (c.w_shape[0], c.w_shape[1]);
        let mut w_shape = c.w_shape.clone();
        w_shape[0] = c_in;
        w_shape[1] = c_out_g;
        let mut x_shape = c.x_shape.clone();
        x_shape[1] = c_in;
        let s = x_shape.len() - 2;
        // Output padding below max(stride, dilation), and padding that leaves an output.
        let output_padding: Vec<usize> = (0..s)
            .map(|d| (op_seed as usize >> (4 * d)) % c.stride[d].max(c.dilation[d]))
            .collect();
        let mut pad = c.pad.clone();
        for d in 0..s {
            let full = (x_shape[2 + d] - 1) * c.stride[d] + c.dilation[d] * (w_shape[2 + d] - 1) + output_padding[d] + 1;
            while pad[d].0 + pad[d].1 >= full {
                if pad[d].0 > 0 { pad[d].0 -= 1 } else { pad[d].1 -= 1 }
            }
        }
        let opts = ConvOptions::default()
            .stride(&c.stride)
            .dilation(&c.dilation)
            .padding(Padding::Explicit(pad.clone()))
            .groups(c.groups)
            .output_padding(&output_padding);
        let (x, xa) = random(&x_shape, &mut rng);
        let (w, wa) = random(&w_shape, &mut rng);
        let y = x.conv_transpose(&w, None, &opts).unwrap();
        let refp = RefConv { pad: pad.clone(), mode: RefPad::Zeros, ..c.reference() };
        let (want, mag) = ref_conv_transpose(&xa, &wa, &refp, &output_padding);
        prop_assert_eq!(y.shape(), &want.shape[..]);
        assert_rel_close("conv_transpose", &y.to_vec(), &want.data, &mag.data, TOL);
        // Its input gradient is a forward conv of the output gradient: check the adjoint
        // identity <conv_transpose(x), g> = <x, dx>.
        let (g, _) = random(y.shape(), &mut rng);
        let dx = Tensor::conv_transpose_backward_input(&g, &w, &x_shape, &opts).unwrap();
        let lhs: f64 = y.to_vec().iter().zip(g.to_vec()).map(|(&a, b)| a as f64 * b as f64).sum();
        let rhs: f64 = x.to_vec().iter().zip(dx.to_vec()).map(|(&a, b)| a as f64 * b as f64).sum();
        let scale: f64 = mag.data.iter().sum::<f64>().max(1.0);
        prop_assert!((lhs - rhs).abs() <= 1e-4 * scale, "adjoint: {lhs} vs {rhs}");
        let dw = Tensor::conv_transpose_backward_weight(&x, &g, &w_shape, &opts).unwrap();
        let lhs_w: f64 = w.to_vec().iter().zip(dw.to_vec()).map(|(&a, b)| a as f64 * b as f64).sum();
        prop_assert!((lhs - lhs_w).abs() <= 1e-4 * scale, "weight adjoint: {lhs} vs {lhs_w}");
    }
}

/// Output rows of 5, 6, 10, 20 and 37 columns make the indirect kernel pack output positions
/// densely across row ends (2 or 3 segments per 16-lane AVX-512 or 8-lane AVX2 group), 16
/// columns fill every lane; 13 output channels end in a partial block of rows on both widths
/// (8 + 5, 6 + 6 + 1). The proptests rarely reach those shapes, so check them here against
/// the reference, forward and backward.
#[test]
fn rows_not_a_multiple_of_16_match_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shapes = [
        (12usize, 12usize),
        (6, 22),
        (5, 39),
        (4, 7),
        (9, 8),
        (3, 18),
    ];
    for (&(h, w), c_out) in shapes.iter().zip([5usize, 13].into_iter().cycle()) {
        let (x, xa) = random(&[2, 3, h, w], &mut rng);
        let (wt, wa) = random(&[c_out, 3, 3, 3], &mut rng);
        let (b, ba) = random(&[c_out], &mut rng);
        let opts = ConvOptions::default().pad(0);
        let y = x.conv(&wt, Some(&b), &opts).unwrap();
        let refp = RefConv {
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: vec![(0, 0); 2],
            groups: 1,
            mode: RefPad::Zeros,
        };
        let (want, mag) = ref_conv(&xa, &wa, Some(&ba.data), &refp);
        assert_rel_close(
            "dense-group forward",
            &y.to_vec(),
            &want.data,
            &mag.data,
            TOL,
        );
        let (g, ga) = random(y.shape(), &mut rng);
        let dx = Tensor::conv_backward_input(&g, &wt, x.shape(), &opts).unwrap();
        let dw = Tensor::conv_backward_weight(&x, &g, wt.shape(), &opts).unwrap();
        let (rdx, rdxm, rdw, rdwm) = ref_conv_grads(&xa, &wa, &ga, &refp);
        assert_rel_close("dense-group dx", &dx.to_vec(), &rdx.data, &rdxm.data, TOL);
        assert_rel_close("dense-group dw", &dw.to_vec(), &rdw.data, &rdwm.data, TOL);
    }
}

/// A reduction of 48 channels x 9 taps (432 rows) is cut into slices on AVX2 (each pass adds
/// to C), with full 16-column rows and masked 10-column rows; 13 output channels end in a
/// partial block of rows.
#[test]
fn long_reductions_cut_into_slices_match_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for &(h, w) in &[(6usize, 16usize), (5, 10)] {
        let (x, xa) = random(&[2, 48, h, w], &mut rng);
        let (wt, wa) = random(&[13, 48, 3, 3], &mut rng);
        let (b, ba) = random(&[13], &mut rng);
        let y = x
            .conv(&wt, Some(&b), &ConvOptions::default().pad(1))
            .unwrap();
        let refp = RefConv {
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: vec![(1, 1); 2],
            groups: 1,
            mode: RefPad::Zeros,
        };
        let (want, mag) = ref_conv(&xa, &wa, Some(&ba.data), &refp);
        assert_rel_close("sliced forward", &y.to_vec(), &want.data, &mag.data, TOL);
    }
}

#[test]
fn seed_example_ecg_1d() {
    // 14 samples, 1 channel, 16 filters of size 5 -> 16 x 10.
    let x = Tensor::ones(&[1, 1, 14]);
    let w = Tensor::ones(&[16, 1, 5]);
    let y = x.conv(&w, None, &ConvOptions::default()).unwrap();
    assert_eq!(y.shape(), &[1, 16, 10]);
    assert!(y.to_vec().iter().all(|&v| v == 5.0));
}

#[test]
fn seed_example_volume_3d() {
    // 14 x 14 x 14 volume, 1 channel, 16 filters of 5 x 5 x 5 -> 16 x 10 x 10 x 10.
    let x = Tensor::ones(&[1, 1, 14, 14, 14]);
    let w = Tensor::ones(&[16, 1, 5, 5, 5]);
    let y = x.conv(&w, None, &ConvOptions::default()).unwrap();
    assert_eq!(y.shape(), &[1, 16, 10, 10, 10]);
    assert!(y.to_vec().iter().all(|&v| v == 125.0));
}

#[test]
fn same_padding_keeps_size_like_pytorch() {
    // Even kernel: PyTorch puts the odd element of padding after.
    let x = Tensor::arange(7).reshape(&[1, 1, 7]).unwrap();
    let w = Tensor::ones(&[1, 1, 4]);
    let y = x
        .conv(&w, None, &ConvOptions::default().padding(Padding::Same))
        .unwrap();
    // Total padding 3: 1 before, 2 after, so output o sums x[o-1 .. o+3) (zeros outside).
    assert_eq!(y.to_vec(), vec![3.0, 6.0, 10.0, 14.0, 18.0, 15.0, 11.0]);
}

#[test]
fn one_by_one_fast_path_equals_general_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (x, _) = random(&[2, 8, 9, 11], &mut rng);
    let (w, _) = random(&[5, 8, 1, 1], &mut rng);
    let fast = x.conv(&w, None, &ConvOptions::default()).unwrap();
    // The same product through matmul: (C_out x C_in) * (C_in x HW) per image.
    let w2 = w.reshape(&[5, 8]).unwrap();
    for b in 0..2 {
        let xb = x.select(0, b).unwrap().reshape(&[8, 99]).unwrap();
        let want = w2.matmul(&xb).unwrap().to_vec();
        let got = fast.select(0, b).unwrap().to_vec();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}

fn window_error(r: Result<Tensor, Error>) -> String {
    match r {
        Err(e @ Error::InvalidWindow { .. }) => e.to_string(),
        other => panic!("expected InvalidWindow, got {other:?}"),
    }
}

#[test]
fn a_fixed_weight_refuses_other_groups() {
    let w = Tensor::zeros(&[4, 2, 3, 3]);
    let x = Tensor::zeros(&[1, 4, 5, 5]);
    let fixed = FixedConvWeight::new(w, 2);
    assert!(
        x.conv_fixed(&fixed, None, &ConvOptions::default().groups(2))
            .is_ok()
    );
    let e = x
        .conv_fixed(
            &FixedConvWeight::new(Tensor::zeros(&[4, 4, 3, 3]), 2),
            None,
            &ConvOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("groups 1 differ from the 2"), "{e}");
}

#[test]
fn misuse_gives_typed_errors() {
    let x = Tensor::zeros(&[1, 4, 8, 8]);
    let w = Tensor::zeros(&[6, 2, 3, 3]);
    let msg = window_error(x.conv(&w, None, &ConvOptions::default().groups(3)));
    assert!(msg.contains("groups 3 must divide C_in 4"), "{msg}");
    let msg = window_error(x.conv(&w, None, &ConvOptions::default().groups(2).stride(&[0])));
    assert!(msg.contains("stride"), "{msg}");
    let big = Tensor::zeros(&[6, 2, 9, 3]);
    let msg = window_error(x.conv(&big, None, &ConvOptions::default().groups(2)));
    assert!(msg.contains("exceeds padded input 8"), "{msg}");
    let zero_k = Tensor::zeros(&[6, 2, 0, 3]);
    let msg = window_error(x.conv(&zero_k, None, &ConvOptions::default().groups(2)));
    assert!(msg.contains("zero-sized"), "{msg}");
    let msg = window_error(
        x.conv(
            &w,
            None,
            &ConvOptions::default()
                .groups(2)
                .pad(8)
                .padding_mode(PaddingMode::Reflect),
        ),
    );
    assert!(msg.contains("too large"), "{msg}");
    assert!(matches!(
        Tensor::zeros(&[4, 8]).conv(&w, None, &ConvOptions::default()),
        Err(Error::RankMismatch { .. })
    ));
    assert!(matches!(
        x.conv(&Tensor::zeros(&[6, 2, 3]), None, &ConvOptions::default()),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad_bias = Tensor::zeros(&[5]);
    assert!(matches!(
        x.conv(&w, Some(&bad_bias), &ConvOptions::default().groups(2)),
        Err(Error::ShapeMismatch { .. })
    ));
    let msg = window_error(x.conv(
        &Tensor::zeros(&[6, 4, 3, 3]),
        None,
        &ConvOptions::default().stride(&[2]).padding(Padding::Same),
    ));
    assert!(msg.contains("same"), "{msg}");
    let wt = Tensor::zeros(&[4, 2, 3, 3]);
    let msg =
        window_error(x.conv_transpose(&wt, None, &ConvOptions::default().output_padding(&[1])));
    assert!(msg.contains("output_padding"), "{msg}");
    // A zero-sized spatial dimension: an underflow (a panic in debug builds, a wrong-size
    // result in release) before it was checked.
    let empty = Tensor::zeros(&[1, 4, 0, 8]);
    let msg = window_error(empty.conv_transpose(&wt, None, &ConvOptions::default()));
    assert!(msg.contains("zero-sized spatial"), "{msg}");
    // groups 0 is refused by both plans (the transposed one used to read it as 1).
    let msg = window_error(x.conv_transpose(&wt, None, &ConvOptions::default().groups(0)));
    assert!(msg.contains("groups must be at least 1"), "{msg}");
    let msg = window_error(x.conv(&wt, None, &ConvOptions::default().groups(0)));
    assert!(msg.contains("groups must be at least 1"), "{msg}");
}
