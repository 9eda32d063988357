//! Zeiler-Fergus tools on tiny networks: the deconvnet projection against the same steps done
//! by hand, the influence box against receptive-field arithmetic, occlusion on a network that
//! only sees one corner, and the strongest activations.

use autograd::{ReluRule, Var};
use nn::inspect::{Layered, influence_box, occlusion_map, project, top_activations};
use nn::{Ctx, ParamStore};
use rand::SeedableRng;
use tensor::{ConvOptions, PoolOptions, Tensor};

/// conv 3x3 (pad 1, 1 -> 2 channels) -> ReLU -> max pool 2 -> conv 3x3 (pad 1, 2 -> 2).
/// Layers: 0 conv1, 1 relu, 2 pool, 3 conv2.
struct Tiny {
    w1: Tensor,
    w2: Tensor,
}

impl Layered for Tiny {
    fn layer<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, layer: usize) -> nn::Result<Var<'g>> {
        let g = cx.graph();
        let opts = ConvOptions::default().pad(1);
        let mut y = x.conv(&g.constant(self.w1.clone()), None, &opts)?;
        if layer >= 1 {
            y = y.relu();
        }
        if layer >= 2 {
            y = y.max_pool(&PoolOptions::new(&[2]))?;
        }
        if layer >= 3 {
            y = y.conv(&g.constant(self.w2.clone()), None, &opts)?;
        }
        Ok(y)
    }
}

fn tiny() -> Tiny {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    Tiny {
        w1: Tensor::randn(&[2, 1, 3, 3], 0.0, 1.0, &mut rng),
        w2: Tensor::randn(&[2, 2, 3, 3], 0.0, 1.0, &mut rng),
    }
}

#[test]
fn deconvnet_projection_equals_the_steps_by_hand() {
    let net = tiny();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let img = Tensor::randn(&[1, 8, 8], 0.0, 1.0, &mut rng);
    let store = ParamStore::new();
    let (unit, at) = (1, (2, 1));
    let got = project(&net, &store, &img, 3, unit, at, ReluRule::Deconvnet).unwrap();
    // By hand: forward with switches, then: the activation alone -> transposed conv2 ->
    // unpool with the switches -> ReLU on the signal -> transposed conv1.
    let opts = ConvOptions::default().pad(1);
    let x = img.unsqueeze(0).unwrap();
    let c1 = x.conv(&net.w1, None, &opts).unwrap();
    let r1 = c1.relu();
    let (p1, switches) = r1.max_pool(&PoolOptions::new(&[2])).unwrap();
    let c2 = p1.conv(&net.w2, None, &opts).unwrap();
    let s = c2.shape().to_vec();
    let mut seed = vec![0.0f32; c2.numel()];
    let i = (unit * s[2] + at.0) * s[3] + at.1;
    seed[i] = c2.to_vec()[i];
    let seed = Tensor::from_vec(seed, &s).unwrap();
    let back2 = Tensor::conv_backward_input(&seed, &net.w2, p1.shape(), &opts).unwrap();
    let unpooled = Tensor::max_pool_backward(&back2, &switches).unwrap();
    let rectified = unpooled.relu();
    let want = Tensor::conv_backward_input(&rectified, &net.w1, x.shape(), &opts).unwrap();
    let (a, b) = (got.to_vec(), want.to_vec());
    assert!(a.iter().any(|v| *v != 0.0));
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
    }
    // The true gradient differs exactly where the backward signal met a negative pre-activation
    // or a negative signal: here it is a different picture.
    let grad = project(&net, &store, &img, 3, unit, at, ReluRule::Gradient).unwrap();
    assert_ne!(grad.to_vec(), a);
}

#[test]
fn influence_box_is_the_receptive_field() {
    let net = tiny();
    let store = ParamStore::new();
    let img = Tensor::full(&[1, 8, 8], 1.0);
    // conv1 at (0, 0) sees rows/cols -1..=1 of the input: the box 0..2.
    assert_eq!(
        influence_box(&net, &store, &img, 0, 0, (0, 0)).unwrap(),
        Some((0, 0, 2, 2))
    );
    // conv2 at (1, 1) of the pooled map sees pooled rows/cols 0..=2. Max pooling passes back
    // only through its switches; on a constant image every window's switch is its first
    // element, so rows 0, 2, 4 of relu1 are reached, and conv1 widens them by one: 0..=5.
    assert_eq!(
        influence_box(&net, &store, &img, 3, 0, (1, 1)).unwrap(),
        Some((0, 0, 6, 6))
    );
}

#[test]
fn occlusion_lights_up_only_where_the_network_looks() {
    // A "network" that sums the top-left 4 x 4 corner.
    let score = |t: &Tensor| -> nn::Result<f32> {
        let v = t.to_vec();
        Ok((0..4)
            .flat_map(|y| (0..4).map(move |x| (y, x)))
            .map(|(y, x)| v[y * 16 + x])
            .sum())
    };
    let img = Tensor::full(&[1, 16, 16], 1.0);
    let ((rows, cols), map) = occlusion_map(&img, 4, 4, 0.0, &score).unwrap();
    assert_eq!((rows, cols), (4, 4));
    assert_eq!(map[0], 16.0);
    assert!(map[1..].iter().all(|&v| v == 0.0), "{map:?}");
}

#[test]
fn strongest_activations_are_found_and_sorted() {
    let net = tiny();
    let store = ParamStore::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let images: Vec<Tensor> = (0..5)
        .map(|k| Tensor::randn(&[1, 8, 8], 0.0, 1.0 + k as f32, &mut rng))
        .collect();
    let hits = top_activations(&net, &store, &images, 1, &[0, 1], 3).unwrap();
    assert_eq!(hits.len(), 2);
    for h in &hits {
        assert_eq!(h.len(), 3);
        assert!(h[0].value >= h[1].value && h[1].value >= h[2].value);
    }
    // Brute force for unit 0: the largest value of the relu1 map over all images.
    let best = images
        .iter()
        .map(|img| {
            let y = img
                .unsqueeze(0)
                .unwrap()
                .conv(&net.w1, None, &ConvOptions::default().pad(1))
                .unwrap()
                .relu();
            y.to_vec()[..64].iter().copied().fold(f32::MIN, f32::max)
        })
        .fold(f32::MIN, f32::max);
    assert_eq!(hits[0][0].value, best);
    assert!(top_activations(&net, &store, &images, 1, &[5], 1).is_err());
}
