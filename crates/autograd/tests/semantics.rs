//! What the tape promises, with hand-derived values (derivations in comments).

use autograd::{Error, Graph, OpKind};
use tensor::{ConvOptions, Tensor};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

#[test]
fn reuse_accumulates() {
    // c = x + x + 1; d = c * c + x  =>  dd/dx = 2c * 2 + 1 = 4(2x + 1) + 1. At x = 2: 21.
    let g = Graph::new();
    let x = g.leaf(t(&[2.0], &[1]));
    let c = x.add(&x).unwrap().add_scalar(1.0);
    let d = c.mul(&c).unwrap().add(&x).unwrap().sum().unwrap();
    let grads = g.backward(&d).unwrap();
    assert_eq!(grads.get(&x).unwrap().to_vec(), vec![21.0]);
}

#[test]
fn detach_blocks_the_gradient() {
    // y = x * detach(x): only the first factor carries a gradient, so dy/dx = x = 3.
    let g = Graph::new();
    let x = g.leaf(t(&[3.0], &[1]));
    let y = x.mul(&x.detach()).unwrap().sum().unwrap();
    assert_eq!(g.backward(&y).unwrap().get(&x).unwrap().to_vec(), vec![3.0]);
}

#[test]
fn no_grad_records_nothing() {
    let g = Graph::no_grad();
    let x = g.leaf(t(&[1.0, 2.0], &[2]));
    let y = x.exp().mul(&x).unwrap().sum().unwrap();
    assert_eq!(g.len(), 0);
    assert!(x.node().is_none() && y.node().is_none());
    // Backward on an untracked loss returns no gradients rather than failing.
    assert!(g.backward(&y).unwrap().get(&x).is_none());
}

#[test]
fn constants_record_nothing() {
    let g = Graph::new();
    let a = g.constant(t(&[1.0, 2.0], &[2]));
    let b = a.exp().add(&a).unwrap().sum().unwrap();
    assert_eq!(g.len(), 0);
    assert!(b.node().is_none());
}

#[test]
fn unused_leaf_gets_no_gradient() {
    let g = Graph::new();
    let used = g.leaf(t(&[1.0], &[1]));
    let unused = g.leaf(t(&[5.0], &[1]));
    let _other = unused.exp(); // recorded, but not on the loss's path
    let loss = used.sqr().sum().unwrap();
    let grads = g.backward(&loss).unwrap();
    assert_eq!(grads.get(&used).unwrap().to_vec(), vec![2.0]);
    assert!(grads.get(&unused).is_none());
}

#[test]
fn shared_weights_sum_their_gradients() {
    // Siamese twins: one weight used on two inputs. loss = sum(w x1) + sum(w x2), so
    // dloss/dw = x1 + x2 (summed over the batch rows).
    let g = Graph::new();
    let w = g.leaf(t(&[0.5, -1.0, 2.0], &[3, 1]));
    let x1 = g.constant(t(&[1.0, 2.0, 3.0], &[1, 3]));
    let x2 = g.constant(t(&[4.0, 5.0, 6.0], &[1, 3]));
    let loss = x1
        .matmul(&w)
        .unwrap()
        .add(&x2.matmul(&w).unwrap())
        .unwrap()
        .sum()
        .unwrap();
    let grads = g.backward(&loss).unwrap();
    assert_eq!(grads.get(&w).unwrap().to_vec(), vec![5.0, 7.0, 9.0]);
}

#[test]
fn gradients_reach_an_input_image() {
    // Style transfer optimises pixels: a constant filter, the image as the only leaf.
    // A 1x1 conv with weight 2 then sum: dloss/dpixel = 2 everywhere.
    let g = Graph::new();
    let img = g.leaf(Tensor::ones(&[1, 3, 4, 4]));
    let w = g.constant(Tensor::full(&[1, 3, 1, 1], 2.0));
    let loss = img
        .conv(&w, None, &ConvOptions::default())
        .unwrap()
        .sum()
        .unwrap();
    let grads = g.backward(&loss).unwrap();
    assert!(grads.get(&img).unwrap().to_vec().iter().all(|&v| v == 2.0));
    assert!(g.op_kinds().contains(&OpKind::Conv));
}

#[test]
fn broadcast_gradients_sum_over_the_broadcast_axes() {
    // y = sum(a + b) with a (2x3), b (3): db = 2 per element (two rows), da = 1.
    let g = Graph::new();
    let a = g.leaf(Tensor::zeros(&[2, 3]));
    let b = g.leaf(Tensor::zeros(&[3]));
    let y = a.add(&b).unwrap().sum().unwrap();
    let grads = g.backward(&y).unwrap();
    assert_eq!(grads.get(&b).unwrap().to_vec(), vec![2.0, 2.0, 2.0]);
    assert_eq!(grads.get(&a).unwrap().shape(), &[2, 3]);
}

#[test]
fn backward_refuses_a_non_scalar_loss_and_foreign_vars() {
    let g = Graph::new();
    let x = g.leaf(Tensor::zeros(&[2]));
    assert!(matches!(g.backward(&x), Err(Error::NonScalarLoss { .. })));
    let other = Graph::new();
    let y = other.leaf(Tensor::zeros(&[2]));
    assert!(matches!(x.add(&y), Err(Error::GraphMismatch { .. })));
    assert!(matches!(
        other.backward(&x.sum().unwrap()),
        Err(Error::GraphMismatch { .. })
    ));
}

#[test]
fn backward_twice_gives_the_same_gradients() {
    // The sweep does not consume the tape: it is a pure function of it.
    let g = Graph::new();
    let x = g.leaf(t(&[1.0, -2.0], &[2]));
    let y = x.sqr().sum().unwrap();
    let first = g.backward(&y).unwrap().get(&x).unwrap().to_vec();
    let second = g.backward(&y).unwrap().get(&x).unwrap().to_vec();
    assert_eq!(first, vec![2.0, -4.0]);
    assert_eq!(first, second);
}
