//! Finite-difference gradient checks for every op kind and every conv / pool option.
//!
//! Each check builds `L = sum(w * f(inputs))` with fixed random weights `w` (every output
//! element matters, no symmetric cancellation) and compares the tape's gradients with central
//! differences `(L(x + eps v) - L(x - eps v)) / 2 eps`: element by element for inputs of at most
//! 64 elements, along three random directions for larger ones. Tolerances: `eps = 1e-2` (f32),
//! `|analytic - numeric| <= 2e-3 + 1e-2 |numeric|`; inputs are drawn away from kinks (relu,
//! abs, clamp, max ties) by more than `3 eps`.
//!
//! `every_op_kind_has_a_gradient_check` walks `OpKind::ALL` through an exhaustive `match`: a
//! new op kind does not compile until it has a check here, and the check must put that kind on
//! the tape.

use autograd::{Graph, OpKind, Result, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::{ConvOptions, Padding, PaddingMode, PoolOptions, Tensor};

const EPS: f32 = 1e-2;
const ATOL: f64 = 2e-3;
const RTOL: f64 = 1e-2;

type F = dyn for<'g> Fn(&'g Graph, &[Var<'g>]) -> Result<Var<'g>>;

/// Gives a closure the higher-ranked signature `gradcheck` needs.
fn hr<Fun>(f: Fun) -> Fun
where
    Fun: for<'g> Fn(&'g Graph, &[Var<'g>]) -> Result<Var<'g>>,
{
    f
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform in `[lo, hi)`.
fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, &mut rng(seed))
}

/// Values whose pairwise gaps exceed 3 eps (for max and pooling ties), in random order.
fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut vals: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    let mut r = rng(seed);
    for i in (1..n).rev() {
        vals.swap(i, r.random_range(0..=i));
    }
    Tensor::from_vec(vals, shape).unwrap()
}

/// Values with |x| in [0.1, 1): far from a kink at 0.
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
    let mut r = rng(seed);
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            let m = r.random_range(0.1f32..1.0);
            if r.random::<bool>() { m } else { -m }
        })
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn eval_loss(f: &F, inputs: &[Tensor], w: &Tensor) -> f64 {
    let g = Graph::no_grad();
    let vars: Vec<Var> = inputs.iter().map(|t| g.constant(t.clone())).collect();
    let out = f(&g, &vars).expect("forward");
    out.value()
        .to_vec()
        .iter()
        .zip(w.to_vec())
        .map(|(&o, w)| o as f64 * w as f64)
        .sum()
}

/// Checks `f`'s gradients with respect to every input and returns the op kinds it recorded.
fn gradcheck(name: &str, inputs: &[Tensor], f: &F) -> Vec<OpKind> {
    let g = Graph::new();
    let leaves: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
    let out = f(&g, &leaves).expect("forward");
    let w = uniform(out.shape(), -1.0, 1.0, 99);
    let loss = out.mul(&g.constant(w.clone())).unwrap().sum().unwrap();
    let grads = g.backward(&loss).unwrap();
    let kinds = g.op_kinds();
    for (i, leaf) in leaves.iter().enumerate() {
        let an = grads
            .get(leaf)
            .map(|t| t.to_vec())
            .unwrap_or_else(|| vec![0.0; inputs[i].numel()]);
        let n = inputs[i].numel();
        let directions: Vec<Vec<f32>> = if n <= 64 {
            (0..n)
                .map(|j| (0..n).map(|k| (k == j) as u8 as f32).collect())
                .collect()
        } else {
            let mut r = rng(7 + i as u64);
            (0..3)
                .map(|_| {
                    (0..n)
                        .map(|_| if r.random::<bool>() { 1.0 } else { -1.0 })
                        .collect()
                })
                .collect()
        };
        for (d, v) in directions.iter().enumerate() {
            let shifted = |sign: f32| -> Vec<Tensor> {
                let mut xs = inputs.to_vec();
                let data: Vec<f32> = inputs[i]
                    .to_vec()
                    .iter()
                    .zip(v)
                    .map(|(&x, &dv)| x + sign * EPS * dv)
                    .collect();
                xs[i] = Tensor::from_vec(data, inputs[i].shape()).unwrap();
                xs
            };
            let numeric = (eval_loss(f, &shifted(1.0), &w) - eval_loss(f, &shifted(-1.0), &w))
                / (2.0 * EPS as f64);
            let analytic: f64 = an.iter().zip(v).map(|(&a, &dv)| a as f64 * dv as f64).sum();
            assert!(
                (analytic - numeric).abs() <= ATOL + RTOL * numeric.abs(),
                "{name}: input {i}, direction {d}: analytic {analytic:.6} vs numeric {numeric:.6}"
            );
        }
    }
    kinds
}

fn conv_case(name: &str, x: &[usize], w: &[usize], bias: bool, opts: ConvOptions) -> Vec<OpKind> {
    let mut inputs = vec![uniform(x, -1.0, 1.0, 1), uniform(w, -1.0, 1.0, 2)];
    if bias {
        inputs.push(uniform(&[w[0]], -1.0, 1.0, 3));
    }
    let f = hr(move |_g, v| v[0].conv(&v[1], v.get(2), &opts));
    gradcheck(name, &inputs, &f)
}

fn conv_t_case(name: &str, x: &[usize], w: &[usize], opts: ConvOptions) -> Vec<OpKind> {
    let inputs = vec![
        uniform(x, -1.0, 1.0, 4),
        uniform(w, -1.0, 1.0, 5),
        uniform(&[w[1] * opts.groups], -1.0, 1.0, 6),
    ];
    let f = hr(move |_g, v| v[0].conv_transpose(&v[1], Some(&v[2]), &opts));
    gradcheck(name, &inputs, &f)
}

fn pool_case(name: &str, x: &[usize], opts: PoolOptions, max: bool) -> Vec<OpKind> {
    let f = hr(move |_g, v| {
        if max {
            v[0].max_pool(&opts)
        } else {
            v[0].avg_pool(&opts)
        }
    });
    gradcheck(name, &[distinct(x, 8)], &f)
}

/// Runs the checks for one op kind and returns every kind they recorded.
fn check(kind: OpKind) -> Vec<OpKind> {
    let a23 = || uniform(&[2, 3], -1.0, 1.0, 10);
    let b3 = || uniform(&[3], -1.0, 1.0, 11);
    let pos = |seed| uniform(&[2, 3], 0.5, 2.0, seed);
    let unary = |name: &str, x: Tensor, f: for<'g> fn(&Var<'g>) -> Var<'g>| {
        gradcheck(name, &[x], &hr(move |_g, v| Ok(f(&v[0]))))
    };
    let binary =
        |name: &str, a: Tensor, b: Tensor, f: for<'g> fn(&Var<'g>, &Var<'g>) -> Result<Var<'g>>| {
            gradcheck(name, &[a, b], &hr(move |_g, v| f(&v[0], &v[1])))
        };
    match kind {
        OpKind::Leaf => unary("leaf", a23(), |x| x.clone()),
        // Broadcasting on the right operand exercises the unbroadcast of gradients.
        OpKind::Add => binary("add", a23(), b3(), |a, b| a.add(b)),
        OpKind::Sub => binary("sub", a23(), uniform(&[2, 1], -1.0, 1.0, 12), |a, b| {
            a.sub(b)
        }),
        OpKind::Mul => binary("mul", a23(), b3(), |a, b| a.mul(b)),
        OpKind::Div => binary("div", a23(), pos(13), |a, b| a.div(b)),
        OpKind::Maximum => {
            let a = distinct(&[2, 3], 14);
            let b = a
                .add_scalar(0.07)
                .mul(&Tensor::from_vec(vec![1.0, -1.0, 1.0, -1.0, 1.0, -1.0], &[2, 3]).unwrap())
                .unwrap();
            binary("maximum", a, b, |a, b| a.maximum(b))
        }
        OpKind::Minimum => {
            let a = distinct(&[2, 3], 15);
            let b = a.add_scalar(-0.07).scale(-1.0);
            binary("minimum", a, b, |a, b| a.minimum(b))
        }
        OpKind::Neg => unary("neg", a23(), |x| x.neg()),
        OpKind::Abs => unary("abs", away_from_zero(&[2, 3], 16), |x| x.abs()),
        OpKind::Sqr => unary("sqr", a23(), |x| x.sqr()),
        OpKind::Sqrt => unary("sqrt", pos(17), |x| x.sqrt()),
        OpKind::Exp => unary("exp", a23(), |x| x.exp()),
        OpKind::Log => unary("log", pos(18), |x| x.log()),
        OpKind::Relu => unary("relu", away_from_zero(&[2, 3], 19), |x| x.relu()),
        OpKind::LeakyRelu => unary("leaky_relu", away_from_zero(&[2, 3], 20), |x| {
            x.leaky_relu(0.1)
        }),
        OpKind::Sigmoid => unary("sigmoid", a23(), |x| x.sigmoid()),
        OpKind::Tanh => unary("tanh", a23(), |x| x.tanh()),
        OpKind::Softplus => unary("softplus", a23(), |x| x.softplus()),
        // Clamp bounds at +-0.5, inputs away from both bounds.
        OpKind::Clamp => unary(
            "clamp",
            away_from_zero(&[2, 3], 21).scale(0.45).add_scalar(0.0),
            |x| x.add_scalar(0.3).clamp(-0.5, 0.5),
        ),
        OpKind::Powf => unary("powf", pos(22), |x| x.powf(1.7)),
        OpKind::Scale => unary("scale", a23(), |x| x.scale(-2.5)),
        OpKind::AddScalar => unary("add_scalar", a23(), |x| x.add_scalar(3.0)),
        OpKind::Sum => {
            let mut k = unary("sum_axes", uniform(&[2, 3, 4], -1.0, 1.0, 23), |x| {
                x.sum_axes(&[0, 2], false).unwrap()
            });
            k.extend(unary(
                "sum_keepdim",
                uniform(&[2, 3, 4], -1.0, 1.0, 24),
                |x| x.sum_axes(&[1], true).unwrap(),
            ));
            k
        }
        OpKind::Mean => unary("mean_axes", uniform(&[2, 3, 4], -1.0, 1.0, 25), |x| {
            x.mean_axes(&[1, 2], false).unwrap()
        }),
        OpKind::Max => {
            let mut k = unary("max_axes", distinct(&[3, 4], 26), |x| {
                x.max_axes(&[1], false).unwrap()
            });
            k.extend(unary("min_axes", distinct(&[3, 4], 46), |x| {
                x.min_axes(&[0], true).unwrap()
            }));
            k
        }
        OpKind::LogSoftmax => {
            let mut k = unary("log_softmax", uniform(&[3, 5], -2.0, 2.0, 27), |x| {
                x.log_softmax(1).unwrap()
            });
            k.extend(unary(
                "softmax axis 0",
                uniform(&[3, 5], -2.0, 2.0, 28),
                |x| x.softmax(0).unwrap(),
            ));
            k.extend(unary(
                "l2_normalize",
                uniform(&[3, 5], -2.0, 2.0, 29),
                |x| x.l2_normalize(1, 1e-6).unwrap(),
            ));
            k
        }
        OpKind::Reshape => unary("reshape", a23(), |x| {
            x.reshape(&[3, 2])
                .unwrap()
                .mul(&x.reshape(&[3, 2]).unwrap())
                .unwrap()
        }),
        OpKind::Permute => unary("permute", uniform(&[2, 3, 4], -1.0, 1.0, 30), |x| {
            x.permute(&[2, 0, 1]).unwrap().exp()
        }),
        OpKind::Narrow => unary("narrow", uniform(&[4, 5], -1.0, 1.0, 31), |x| {
            x.narrow(1, 1, 3).unwrap().sqr()
        }),
        OpKind::Cat => binary("cat", a23(), uniform(&[2, 2], -1.0, 1.0, 32), |a, b| {
            Var::cat(&[a, &b.exp(), a], 1)
        }),
        OpKind::IndexSelect => unary("index_select", uniform(&[4, 3], -1.0, 1.0, 33), |x| {
            x.index_select(0, &[3, 0, 3, 1]).unwrap()
        }),
        OpKind::BroadcastTo => unary("broadcast_to", uniform(&[3, 1], -1.0, 1.0, 34), |x| {
            x.broadcast_to(&[2, 3, 4]).unwrap().sqr()
        }),
        OpKind::Matmul => {
            let mut k = binary(
                "matmul",
                uniform(&[3, 4], -1.0, 1.0, 35),
                uniform(&[4, 2], -1.0, 1.0, 36),
                |a, b| a.matmul(b),
            );
            k.extend(binary(
                "batched matmul, broadcast batch",
                uniform(&[2, 3, 4], -1.0, 1.0, 37),
                uniform(&[4, 2], -1.0, 1.0, 38),
                |a, b| a.matmul(b),
            ));
            k.extend(binary(
                "matmul of a transpose",
                uniform(&[4, 3], -1.0, 1.0, 39),
                uniform(&[4, 2], -1.0, 1.0, 40),
                |a, b| a.transpose(0, 1)?.matmul(b),
            ));
            k
        }
        OpKind::Gram => {
            // Long rows take the convolution-kernel paths of matmul (forward and backward).
            let mut k = unary("gram", uniform(&[3, 5], -1.0, 1.0, 41), |x| {
                x.gram().unwrap()
            });
            k.extend(unary(
                "gram of long rows",
                uniform(&[2, 1100], -1.0, 1.0, 42),
                |x| x.gram().unwrap(),
            ));
            k
        }
        OpKind::Conv => {
            let d = ConvOptions::default;
            let mut k = conv_case("conv1d", &[2, 2, 9], &[3, 2, 3], true, d());
            k.extend(conv_case(
                "conv2d stride 2 pad 1",
                &[1, 2, 6, 5],
                &[3, 2, 3, 3],
                true,
                d().stride(&[2]).pad(1),
            ));
            k.extend(conv_case(
                "conv2d dilation 2",
                &[1, 2, 7, 7],
                &[2, 2, 3, 3],
                false,
                d().dilation(&[2]),
            ));
            k.extend(conv_case(
                "conv2d groups 2",
                &[1, 4, 5, 5],
                &[4, 2, 3, 3],
                true,
                d().groups(2).pad(1),
            ));
            k.extend(conv_case(
                "conv2d depthwise",
                &[1, 3, 5, 5],
                &[3, 1, 3, 3],
                false,
                d().groups(3),
            ));
            k.extend(conv_case(
                "conv2d asymmetric + same",
                &[1, 1, 5, 6],
                &[2, 1, 2, 3],
                false,
                d().padding(Padding::Same),
            ));
            k.extend(conv_case(
                "conv2d asymmetric explicit",
                &[1, 1, 5, 6],
                &[2, 1, 3, 3],
                false,
                d().padding(Padding::Explicit(vec![(0, 2), (1, 0)])),
            ));
            for mode in [
                PaddingMode::Reflect,
                PaddingMode::Replicate,
                PaddingMode::Circular,
            ] {
                k.extend(conv_case(
                    &format!("conv2d {mode:?}"),
                    &[1, 2, 5, 5],
                    &[2, 2, 3, 3],
                    true,
                    d().pad(2).padding_mode(mode),
                ));
            }
            k.extend(conv_case(
                "conv3d",
                &[1, 2, 4, 4, 4],
                &[2, 2, 2, 3, 2],
                true,
                d().pad(1).stride(&[1, 2, 1]),
            ));
            k
        }
        OpKind::ConvTranspose => {
            let d = ConvOptions::default;
            let mut k = conv_t_case(
                "conv_transpose1d stride 2",
                &[2, 2, 4],
                &[2, 3, 3],
                d().stride(&[2]),
            );
            k.extend(conv_t_case(
                "conv_transpose2d pad, output_padding",
                &[1, 2, 3, 3],
                &[2, 2, 3, 3],
                d().stride(&[2]).pad(1).output_padding(&[1]),
            ));
            k.extend(conv_t_case(
                "conv_transpose2d groups, dilation",
                &[1, 4, 3, 3],
                &[4, 1, 2, 2],
                d().groups(2).dilation(&[2]),
            ));
            k.extend(conv_t_case(
                "conv_transpose3d",
                &[1, 1, 2, 3, 2],
                &[1, 2, 2, 2, 2],
                d().stride(&[2, 1, 1]),
            ));
            k
        }
        OpKind::MaxPool => {
            let mut k = pool_case("max_pool2d", &[1, 2, 4, 4], PoolOptions::new(&[2]), true);
            k.extend(pool_case(
                "max_pool2d ceil pad stride",
                &[1, 1, 5, 5],
                PoolOptions::new(&[3])
                    .stride(&[2])
                    .padding(&[1])
                    .ceil_mode(true),
                true,
            ));
            k.extend(pool_case(
                "max_pool1d dilation",
                &[2, 1, 9],
                PoolOptions::new(&[3]).stride(&[1]).dilation(&[2]),
                true,
            ));
            k.extend(pool_case(
                "max_pool3d",
                &[1, 1, 4, 4, 4],
                PoolOptions::new(&[2]),
                true,
            ));
            k
        }
        OpKind::AvgPool => {
            let mut k = pool_case("avg_pool2d", &[1, 2, 4, 4], PoolOptions::new(&[2]), false);
            k.extend(pool_case(
                "avg_pool2d ceil pad exclude",
                &[1, 1, 5, 5],
                PoolOptions::new(&[3])
                    .stride(&[2])
                    .padding(&[1])
                    .ceil_mode(true)
                    .count_include_pad(false),
                false,
            ));
            k.extend(pool_case(
                "avg_pool3d",
                &[1, 1, 4, 4, 4],
                PoolOptions::new(&[2]).stride(&[1]),
                false,
            ));
            k
        }
        OpKind::BatchNorm => {
            let mut k = batch_norm_case("batch_norm2d training", &[3, 2, 2, 3], false);
            k.extend(batch_norm_case("batch_norm1d eval", &[4, 3, 5], true));
            k.extend(batch_norm_case("batch_norm on (N, C)", &[5, 3], false));
            k
        }
    }
}

fn batch_norm_case(name: &str, x: &[usize], eval: bool) -> Vec<OpKind> {
    let c = x[1];
    let inputs = vec![
        uniform(x, -1.0, 1.0, 41),
        uniform(&[c], 0.5, 1.5, 42),
        uniform(&[c], -0.5, 0.5, 43),
    ];
    let (rm, rv) = (uniform(&[c], -0.2, 0.2, 44), uniform(&[c], 0.5, 1.5, 45));
    let f = hr(move |_g, v| {
        let running = eval.then_some((&rm, &rv));
        Ok(v[0].batch_norm(&v[1], &v[2], running, 1e-5)?.0)
    });
    gradcheck(name, &inputs, &f)
}

#[test]
fn every_op_kind_has_a_gradient_check() {
    for &kind in OpKind::ALL {
        let recorded = check(kind);
        assert!(
            recorded.contains(&kind),
            "the check for {kind:?} never recorded that op: {recorded:?}"
        );
    }
}

#[test]
fn op_kind_list_is_complete_and_unique() {
    let mut all = OpKind::ALL.to_vec();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), OpKind::ALL.len());
}
