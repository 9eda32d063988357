//! VGG16/19 with torchvision's layout: parameter names, layer names, and a round trip through
//! a safetensors file of random weights (the real weights are not available here).

use autograd::Graph;
use nn::models::vgg::{Vgg, VggKind, VggPool};
use nn::weights::save_safetensors;
use nn::{Ctx, Mode, ModelSeed};
use tensor::Tensor;

fn conv_indices(kind: VggKind) -> Vec<usize> {
    let mut seed = ModelSeed::new(1);
    let _ = Vgg::new(&mut seed.builder(), kind, VggPool::Max).unwrap();
    let store = seed.store;
    store
        .ids()
        .map(|id| store.name(id).to_string())
        .filter(|n| n.ends_with(".weight"))
        .map(|n| n.split('.').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn parameter_names_follow_torchvision() {
    assert_eq!(
        conv_indices(VggKind::Vgg19),
        vec![0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    );
    assert_eq!(
        conv_indices(VggKind::Vgg16),
        vec![0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    );
    let mut seed = ModelSeed::new(1);
    let v = Vgg::new(&mut seed.builder(), VggKind::Vgg19, VggPool::Max).unwrap();
    assert_eq!(v.layer_index("relu5_1"), Some(29));
    assert_eq!(v.layer_index("conv4_2"), Some(21));
    assert_eq!(v.layer_index("pool3"), Some(18));
    assert_eq!(v.layer_index("7"), Some(7));
    assert_eq!(v.layer_index("relu9_9"), None);
}

#[test]
fn random_torchvision_weights_round_trip_through_safetensors() {
    let mut seed = ModelSeed::new(7);
    let net = Vgg::new(&mut seed.builder(), VggKind::Vgg19, VggPool::Avg).unwrap();
    let store = seed.store;
    let path =
        std::env::temp_dir().join(format!("vgg19-random-{}.safetensors", std::process::id()));
    save_safetensors(&store, &path).unwrap();
    let (loaded, loaded_store) = Vgg::pretrained(&path, VggKind::Vgg19, VggPool::Avg).unwrap();
    let x = Tensor::randn(
        &[1, 3, 32, 32],
        0.0,
        1.0,
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2),
    );
    let g = Graph::no_grad();
    let (a, b) = (
        Ctx::new(&g, &store, Mode::Eval, 0),
        Ctx::new(&g, &loaded_store, Mode::Eval, 0),
    );
    let taps = [
        net.layer_index("relu1_1").unwrap(),
        net.layer_index("relu5_1").unwrap(),
    ];
    let fa = net.features(&a, &g.constant(x.clone()), &taps).unwrap();
    let fb = loaded.features(&b, &g.constant(x), &taps).unwrap();
    assert_eq!(fa[1].shape(), &[1, 512, 2, 2]);
    for (p, q) in fa.iter().zip(&fb) {
        assert_eq!(p.value().to_vec(), q.value().to_vec());
    }
    // A VGG16 file is not a VGG19: the missing tensor is named.
    let err = Vgg::pretrained(&path, VggKind::Vgg16, VggPool::Avg)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("shape") || err.contains("missing"), "{err}");
}
