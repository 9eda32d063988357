//! Matmul on every transpose layout and pooling forward/backward (ceil_mode included) against
//! the naive f64 references in `testkit`.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::{Error, PoolOptions, Tensor};
use testkit::{Arr, RefPool, assert_rel_close, ref_avg_pool, ref_matmul, ref_max_pool};

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..shape.iter().product())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

/// An `r x c` matrix holding `data` row-major, stored either directly or as the transpose of
/// a `c x r` tensor (a strided view, never copied).
fn as_layout(data: &[f32], r: usize, c: usize, transposed: bool) -> Tensor {
    if transposed {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = data[i * c + j];
            }
        }
        Tensor::from_vec(t, &[c, r])
            .unwrap()
            .transpose(0, 1)
            .unwrap()
    } else {
        Tensor::from_vec(data.to_vec(), &[r, c]).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matmul_every_layout(m in 1usize..=70, k in 1usize..=70, n in 1usize..=70, ta: bool, tb: bool, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (a, b) = (random(&[m, k], &mut rng), random(&[k, n], &mut rng));
        let (at, bt) = (as_layout(&a, m, k, ta), as_layout(&b, k, n, tb));
        let c = at.matmul(&bt).unwrap();
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let (want, mag) = ref_matmul(&a64, &b64, m, k, n);
        prop_assert_eq!(c.shape(), &[m, n]);
        assert_rel_close("matmul", &c.to_vec(), &want, &mag, 1e-5);
    }

    #[test]
    fn batched_matmul_broadcasts(batch in 1usize..=4, m in 1usize..=9, k in 1usize..=9, n in 1usize..=9, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = random(&[batch, m, k], &mut rng);
        let b = random(&[k, n], &mut rng);
        let c = Tensor::from_vec(a.clone(), &[batch, m, k]).unwrap()
            .matmul(&Tensor::from_vec(b.clone(), &[1, k, n]).unwrap()).unwrap();
        prop_assert_eq!(c.shape(), &[batch, m, n]);
        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        for i in 0..batch {
            let a64: Vec<f64> = a[i * m * k..(i + 1) * m * k].iter().map(|&v| v as f64).collect();
            let (want, mag) = ref_matmul(&a64, &b64, m, k, n);
            assert_rel_close("bmm", &c.select(0, i).unwrap().to_vec(), &want, &mag, 1e-5);
        }
    }

    /// Long, thin products (Gram matrices of activations and their gradients): a row-major B
    /// with many columns, or a transposed B with a long shared dimension, in every layout of
    /// A, against the f64 reference (the conv-kernel paths and the GEMM fallbacks).
    #[test]
    fn long_thin_matmul_matches_reference(
        m in 1usize..=20, short in 1usize..=20, long in 1000usize..=1100, seed: u64,
        ta: bool, tb: bool, long_is_k: bool,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (k, n) = if long_is_k { (long, short) } else { (short, long) };
        let a = random(&[m, k], &mut rng);
        let b = random(&[k, n], &mut rng);
        let c = as_layout(&a, m, k, ta).matmul(&as_layout(&b, k, n, tb)).unwrap();
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let (want, mag) = ref_matmul(&a64, &b64, m, k, n);
        prop_assert_eq!(c.shape(), &[m, n]);
        assert_rel_close("long thin matmul", &c.to_vec(), &want, &mag, 1e-5);
    }

    /// Windows full of ties (values from {0, 1, 2}, zeros of both signs, some NaN): the
    /// switches of the separable path route the gradient to the reference's element (the
    /// first maximum in row-major order).
    #[test]
    fn max_pool_ties_route_like_the_reference(
        n in 1usize..=2, c in 1usize..=2, seed: u64, ceil: bool,
        kh in 1usize..=4, kw in 1usize..=4, sh in 1usize..=3, sw in 1usize..=3,
        eh in 0usize..=7, ew in 0usize..=7, nan: bool,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shape = vec![n, c, kh + eh, kw + ew];
        let x: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| match rng.random_range(0..7) {
                0 => -0.0,
                1 => 0.0,
                2 if nan => f32::NAN,
                r => (r % 3) as f32,
            })
            .collect();
        let xt = Tensor::from_vec(x.clone(), &shape).unwrap();
        let opts = PoolOptions::new(&[kh, kw]).stride(&[sh, sw]).ceil_mode(ceil);
        let (y, sw_) = xt.max_pool(&opts).unwrap();
        let g = random(y.shape(), &mut rng);
        let rp = RefPool { kernel: vec![kh, kw], stride: vec![sh, sw], pad: vec![0, 0], dilation: vec![1, 1], ceil_mode: ceil, count_include_pad: false };
        let (want, rdx) = ref_max_pool(&Arr::from_f32(&x, &shape), &rp, Some(&Arr::from_f32(&g, y.shape())));
        let got = y.to_vec();
        for (a, b) in got.iter().zip(&want.data) {
            prop_assert!((a.is_nan() && b.is_nan()) || (*a as f64 == *b && a.is_sign_negative() == b.is_sign_negative()), "{} vs {}", a, b);
        }
        let dx = Tensor::max_pool_backward(&Tensor::from_vec(g, y.shape()).unwrap(), &sw_).unwrap();
        // Routing errors would be whole gradients; 1e-6 allows the f32 sums where windows overlap.
        assert_rel_close("tied max_pool backward", &dx.to_vec(), &rdx.data, &vec![1.0; rdx.data.len()], 1e-6);
    }

    /// Unpadded 2D windows: the separable path of `max_pool_values`.
    #[test]
    fn separable_max_pool_matches_reference(
        n in 1usize..=2, c in 1usize..=3, seed: u64, ceil: bool,
        kh in 1usize..=4, kw in 1usize..=4, sh in 1usize..=3, sw in 1usize..=3,
        eh in 0usize..=9, ew in 0usize..=9,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shape = vec![n, c, kh + eh, kw + ew];
        let x = random(&shape, &mut rng);
        let xt = Tensor::from_vec(x.clone(), &shape).unwrap();
        let opts = PoolOptions::new(&[kh, kw]).stride(&[sh, sw]).ceil_mode(ceil);
        let rp = RefPool { kernel: vec![kh, kw], stride: vec![sh, sw], pad: vec![0, 0], dilation: vec![1, 1], ceil_mode: ceil, count_include_pad: false };
        let (want, _) = ref_max_pool(&Arr::from_f32(&x, &shape), &rp, None);
        let y = xt.max_pool_values(&opts).unwrap();
        prop_assert_eq!(y.shape(), &want.shape[..]);
        assert_rel_close("separable max_pool", &y.to_vec(), &want.data, &vec![1.0; want.data.len()], 0.0);
    }

    #[test]
    fn pooling_matches_reference(
        s in 1usize..=3, n in 1usize..=2, c in 1usize..=3, seed: u64, ceil: bool, include_pad: bool,
        dims in prop::collection::vec((1usize..=4, 1usize..=3, 0usize..=2, 1usize..=2, 0usize..=5), 3),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut shape = vec![n, c];
        let (mut k, mut st, mut pd, mut dl) = (vec![], vec![], vec![], vec![]);
        for &(kk, ss, pp, dd, extra) in &dims[..s] {
            let span = dd * (kk - 1) + 1;
            // PyTorch bounds: max pooling pad <= span / 2; avg pooling pad <= k / 2.
            let p = pp.min(span / 2).min(kk / 2);
            shape.push(span.saturating_sub(2 * p).max(1) + extra);
            k.push(kk); st.push(ss); pd.push(p); dl.push(dd);
        }
        let x = random(&shape, &mut rng);
        let xt = Tensor::from_vec(x.clone(), &shape).unwrap();
        let xa = Arr::from_f32(&x, &shape);
        let opts = PoolOptions::new(&k).stride(&st).padding(&pd).dilation(&dl).ceil_mode(ceil).count_include_pad(include_pad);
        let (y, sw) = xt.max_pool(&opts).unwrap();
        let g = random(y.shape(), &mut rng);
        let ga = Arr::from_f32(&g, y.shape());
        let rp = RefPool { kernel: k.clone(), stride: st.clone(), pad: pd.clone(), dilation: dl.clone(), ceil_mode: ceil, count_include_pad: include_pad };
        let (want, rdx) = ref_max_pool(&xa, &rp, Some(&ga));
        prop_assert_eq!(y.shape(), &want.shape[..]);
        let ones = vec![1.0; want.data.len()];
        assert_rel_close("max_pool", &y.to_vec(), &want.data, &ones, 0.0);
        assert_rel_close("max_pool_values", &xt.max_pool_values(&opts).unwrap().to_vec(), &want.data, &ones, 0.0);
        let dx = Tensor::max_pool_backward(&Tensor::from_vec(g.clone(), y.shape()).unwrap(), &sw).unwrap();
        let dones = vec![1.0; rdx.data.len()];
        assert_rel_close("max_pool backward", &dx.to_vec(), &rdx.data, &dones, 1e-6);

        let aopts = PoolOptions { dilation: vec![1], ..opts };
        let rpa = RefPool { dilation: vec![1; s], ..rp };
        let ya = xt.avg_pool(&aopts).unwrap();
        let ga2 = random(ya.shape(), &mut rng);
        let (awant, ardx) = ref_avg_pool(&xa, &rpa, Some(&Arr::from_f32(&ga2, ya.shape())));
        prop_assert_eq!(ya.shape(), &awant.shape[..]);
        let aones = vec![1.0; awant.data.len()];
        assert_rel_close("avg_pool", &ya.to_vec(), &awant.data, &aones, 1e-6);
        let adx = Tensor::avg_pool_backward(&Tensor::from_vec(ga2, ya.shape()).unwrap(), &shape, &aopts).unwrap();
        let adones = vec![1.0; ardx.data.len()];
        assert_rel_close("avg_pool backward", &adx.to_vec(), &ardx.data, &adones, 1e-6);
    }
}

#[test]
fn two_by_two_fast_path_matches_reference() {
    // 2x2 / stride 2 / no padding takes a dedicated loop; odd sizes drop the last row/column.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let shape = [2, 3, 7, 9];
    let x = random(&shape, &mut rng);
    let (y, sw) = Tensor::from_vec(x.clone(), &shape)
        .unwrap()
        .max_pool(&PoolOptions::new(&[2]))
        .unwrap();
    let g = random(y.shape(), &mut rng);
    let rp = RefPool {
        kernel: vec![2, 2],
        stride: vec![2, 2],
        pad: vec![0, 0],
        dilation: vec![1, 1],
        ceil_mode: false,
        count_include_pad: true,
    };
    let (want, rdx) = ref_max_pool(
        &Arr::from_f32(&x, &shape),
        &rp,
        Some(&Arr::from_f32(&g, y.shape())),
    );
    assert_eq!(y.shape(), &[2, 3, 3, 4]);
    let ones = vec![1.0; want.data.len()];
    assert_rel_close("2x2 max_pool", &y.to_vec(), &want.data, &ones, 0.0);
    let dx = Tensor::max_pool_backward(&Tensor::from_vec(g, y.shape()).unwrap(), &sw).unwrap();
    let dones = vec![1.0; rdx.data.len()];
    assert_rel_close(
        "2x2 max_pool backward",
        &dx.to_vec(),
        &rdx.data,
        &dones,
        0.0,
    );
}

#[test]
fn ceil_mode_matches_pytorch_sizes() {
    // torch.nn.functional.max_pool2d(torch.zeros(1,1,6,6), 3, 2, ceil_mode=True).shape == (1,1,3,3)
    let x = Tensor::zeros(&[1, 1, 6, 6]);
    let (y, _) = x
        .max_pool(&PoolOptions::new(&[3]).stride(&[2]).ceil_mode(true))
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    let (y, _) = x.max_pool(&PoolOptions::new(&[3]).stride(&[2])).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    // The last window must start inside input or left padding: 5 wide, k2 s2 p1 ceil -> 3.
    let x = Tensor::zeros(&[1, 1, 5]);
    let (y, _) = x
        .max_pool(
            &PoolOptions::new(&[2])
                .stride(&[2])
                .padding(&[1])
                .ceil_mode(true),
        )
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 3]);
}

#[test]
fn global_avg_pool_and_pool_errors() {
    let x = Tensor::arange(8).reshape(&[1, 2, 2, 2]).unwrap();
    assert_eq!(x.global_avg_pool().unwrap().to_vec(), vec![1.5, 5.5]);
    let e = x
        .max_pool(&PoolOptions::new(&[2]).padding(&[2]))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidWindow { .. }), "{e}");
    let e = x.max_pool(&PoolOptions::new(&[0])).unwrap_err();
    assert!(matches!(e, Error::InvalidWindow { .. }), "{e}");
    let e = x.avg_pool(&PoolOptions::new(&[3])).unwrap_err();
    assert!(e.to_string().contains("exceeds padded input"), "{e}");
    assert!(matches!(
        Tensor::zeros(&[2, 2]).max_pool(&PoolOptions::new(&[1])),
        Err(Error::RankMismatch { .. })
    ));
}
