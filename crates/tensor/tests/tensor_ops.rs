//! Views, elementwise ops, broadcasting, reductions, softmax, cat and index-select: every op on
//! a strided view equals the same op on a contiguous copy, and each agrees with a direct loop.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tensor::{Error, Tensor};

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape).unwrap()
}

/// A random tensor of rank 1..=4 and a random permuted + narrowed view of it.
fn view_case() -> impl Strategy<Value = (Tensor, Tensor)> {
    (prop::collection::vec(1usize..=5, 1..=4), any::<u64>()).prop_map(|(shape, seed)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let base = Tensor::randn(&shape, 0.0, 1.0, &mut rng);
        let rank = shape.len();
        let perm: Vec<usize> = (0..rank).rev().collect();
        let mut v = base.permute(&perm).unwrap();
        if v.shape()[0] > 1 {
            v = v.narrow(0, 1, v.shape()[0] - 1).unwrap();
        }
        (base, v)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ops_on_views_equal_ops_on_copies((_base, v) in view_case()) {
        let c = v.contiguous();
        prop_assert!(c.layout().is_contiguous());
        prop_assert_eq!(v.to_vec(), c.to_vec());
        prop_assert_eq!(v.exp().to_vec(), c.exp().to_vec());
        prop_assert_eq!(v.add(&v).unwrap().to_vec(), c.add(&c).unwrap().to_vec());
        prop_assert_eq!(v.mul(&c).unwrap().to_vec(), c.mul(&c).unwrap().to_vec());
        for axis in 0..v.rank() {
            prop_assert_eq!(v.sum_axes(&[axis], true).unwrap().to_vec(), c.sum_axes(&[axis], true).unwrap().to_vec());
            prop_assert_eq!(v.max_axes(&[axis], false).unwrap().to_vec(), c.max_axes(&[axis], false).unwrap().to_vec());
            prop_assert_eq!(v.argmax(axis).unwrap(), c.argmax(axis).unwrap());
            prop_assert_eq!(v.softmax(axis).unwrap().to_vec(), c.softmax(axis).unwrap().to_vec());
        }
        prop_assert_eq!(v.reshape(&[v.numel()]).unwrap().to_vec(), c.to_vec());
    }

    #[test]
    fn reductions_match_loops((_base, v) in view_case()) {
        let data = v.to_vec();
        let total: f64 = data.iter().map(|&x| x as f64).sum();
        let s = v.sum_axes(&[], false).unwrap().to_scalar().unwrap() as f64;
        prop_assert!((s - total).abs() <= 1e-5 * (1.0 + data.iter().map(|x| x.abs() as f64).sum::<f64>()));
        let mx = data.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        prop_assert_eq!(v.max_axes(&[], false).unwrap().to_scalar().unwrap(), mx);
        // log_softmax is log(softmax), and softmax rows sum to one.
        let last = v.rank() - 1;
        let sm = v.softmax(last).unwrap();
        let rows = sm.sum_axes(&[last], false).unwrap().to_vec();
        prop_assert!(rows.iter().all(|r| (r - 1.0).abs() < 1e-5));
        let ls = v.log_softmax(last).unwrap().to_vec();
        for (a, b) in ls.iter().zip(sm.to_vec()) {
            prop_assert!((a - b.ln()).abs() < 1e-4);
        }
    }

    #[test]
    fn broadcasting_matches_explicit_repeat(rows in 1usize..=6, cols in 1usize..=6, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = Tensor::randn(&[rows, cols], 0.0, 1.0, &mut rng);
        let b = Tensor::randn(&[cols], 0.0, 1.0, &mut rng);
        let c = Tensor::randn(&[rows, 1], 0.0, 1.0, &mut rng);
        let (ad, bd, cd) = (a.to_vec(), b.to_vec(), c.to_vec());
        let ab = a.sub(&b).unwrap().to_vec();
        let ac = a.div(&c).unwrap().to_vec();
        let cb = c.add(&b).unwrap();
        prop_assert_eq!(cb.shape(), &[rows, cols]);
        for i in 0..rows {
            for j in 0..cols {
                prop_assert_eq!(ab[i * cols + j], ad[i * cols + j] - bd[j]);
                prop_assert_eq!(ac[i * cols + j], ad[i * cols + j] / cd[i]);
                prop_assert_eq!(cb.to_vec()[i * cols + j], cd[i] + bd[j]);
            }
        }
    }
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    let x = t(&[1000.0, 1001.0, 1002.0], &[3]);
    let s = x.softmax(0).unwrap().to_vec();
    assert!(s.iter().all(|v| v.is_finite()));
    assert!((s[2] - 0.665_240_9).abs() < 1e-6);
    let l = x.log_softmax(0).unwrap().to_vec();
    assert!((l[0] - (-2.407_606)).abs() < 1e-5);
}

#[test]
fn cat_index_select_where_and_compare() {
    let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t(&[5.0, 6.0], &[1, 2]);
    assert_eq!(
        Tensor::cat(&[&a, &b], 0).unwrap().to_vec(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    let c = Tensor::cat(&[&a, &a.transpose(0, 1).unwrap()], 1).unwrap();
    assert_eq!(c.to_vec(), vec![1.0, 2.0, 1.0, 3.0, 3.0, 4.0, 2.0, 4.0]);
    assert_eq!(
        a.index_select(1, &[1, 1, 0]).unwrap().to_vec(),
        vec![2.0, 2.0, 1.0, 4.0, 4.0, 3.0]
    );
    let back = Tensor::index_add_zeros(&[2, 2], 1, &[1, 1, 0], &t(&[1.0; 6], &[2, 3])).unwrap();
    assert_eq!(back.to_vec(), vec![1.0, 2.0, 1.0, 2.0]);
    let mask = a.gt(&Tensor::scalar(2.0)).unwrap();
    assert_eq!(mask.to_vec(), vec![0.0, 0.0, 1.0, 1.0]);
    assert_eq!(
        mask.where_cond(&a, &Tensor::scalar(-1.0)).unwrap().to_vec(),
        vec![-1.0, -1.0, 3.0, 4.0]
    );
    assert!(matches!(
        Tensor::cat(&[&a, &t(&[1.0; 3], &[1, 3])], 0),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        a.index_select(0, &[2]),
        Err(Error::IndexOutOfRange {
            index: 2,
            size: 2,
            ..
        })
    ));
    assert!(matches!(
        Tensor::cat(&[], 0),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn view_and_shape_errors_are_typed() {
    let a = Tensor::zeros(&[2, 3]);
    assert!(matches!(
        Tensor::from_vec(vec![1.0; 5], &[2, 3]),
        Err(Error::ElementCount {
            len: 5,
            expected: 6,
            ..
        })
    ));
    assert!(matches!(a.reshape(&[4]), Err(Error::ElementCount { .. })));
    assert!(matches!(
        a.permute(&[0, 0]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.transpose(0, 2),
        Err(Error::AxisOutOfRange {
            axis: 2,
            rank: 2,
            ..
        })
    ));
    assert!(matches!(
        a.narrow(1, 2, 2),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        a.add(&Tensor::zeros(&[2])),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        a.sum_axes(&[0, 0], false),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.matmul(&Tensor::zeros(&[2, 3])),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        a.matmul(&Tensor::zeros(&[3])),
        Err(Error::RankMismatch { .. })
    ));
    let e = a.add(&Tensor::zeros(&[4])).unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[2, 3]") && e.contains("[4]"),
        "{e}"
    );
}

#[test]
fn seeded_constructors_are_reproducible() {
    let a = Tensor::randn(&[16], 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(3));
    let b = Tensor::randn(&[16], 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(3));
    let c = Tensor::rand_uniform(&[16], -2.0, 2.0, &mut ChaCha8Rng::seed_from_u64(3));
    assert_eq!(a.to_vec(), b.to_vec());
    assert!(c.to_vec().iter().all(|&v| (-2.0..2.0).contains(&v)));
}
