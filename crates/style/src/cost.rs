//! The costs of Gatys et al. exactly as the seed writes them (eq. 8-13), plus total variation.
//!
//! Activations are `(1, n_C, n_H, n_W)` vars of one graph; targets (the content activation and
//! the style Gram matrices) are constants computed once.

use autograd::Var;

/// Gram matrix of eq. 10-11: `G_kk' = sum_ij a_ijk a_ijk'` for an activation `(1, C, H, W)`;
/// returns `(C, C)`.
///
/// # Errors
/// An activation that is not `(1, C, H, W)`.
pub fn gram<'g>(a: &Var<'g>) -> nn::Result<Var<'g>> {
    let s = a.shape().to_vec();
    if s.len() != 4 || s[0] != 1 {
        return Err(nn::Error::arg(
            "gram",
            format!("expects one activation (1, C, H, W), got {s:?}"),
        ));
    }
    Ok(a.reshape(&[s[1], s[2] * s[3]])?.gram()?)
}

/// Eq. 9: `1/2 ||a_C - a_G||²`.
///
/// # Errors
/// Shapes that differ.
pub fn content_cost<'g>(target: &Var<'g>, generated: &Var<'g>) -> nn::Result<Var<'g>> {
    if target.shape() != generated.shape() {
        return Err(nn::Error::arg(
            "content_cost",
            format!("{:?} vs {:?}", target.shape(), generated.shape()),
        ));
    }
    Ok(target.sub(generated)?.sqr().sum()?.scale(0.5))
}

/// Eq. 12: `1 / (2 n_H n_W n_C)² * sum_kk' (G_S - G_G)²`, with the style Gram `target_gram`
/// `(C, C)` and the generated image's activation `(1, C, H, W)` at the same layer.
///
/// # Errors
/// A Gram matrix whose size does not match the activation's channels.
pub fn style_layer_cost<'g>(target_gram: &Var<'g>, generated: &Var<'g>) -> nn::Result<Var<'g>> {
    let s = generated.shape().to_vec();
    let g = gram(generated)?;
    if target_gram.shape() != g.shape() {
        return Err(nn::Error::arg(
            "style_layer_cost",
            format!(
                "style Gram {:?} vs layer with {} channels",
                target_gram.shape(),
                s[1]
            ),
        ));
    }
    let norm = 2.0 * (s[1] * s[2] * s[3]) as f64;
    Ok(target_gram
        .sub(&g)?
        .sqr()
        .sum()?
        .scale((1.0 / (norm * norm)) as f32))
}

/// Total variation of an image `(1, C, H, W)`: the sum of squared differences between
/// vertically and horizontally neighbouring pixels (smooths high-frequency noise).
///
/// # Errors
/// An image smaller than 2 x 2.
pub fn total_variation<'g>(x: &Var<'g>) -> nn::Result<Var<'g>> {
    let s = x.shape().to_vec();
    if s.len() != 4 || s[2] < 2 || s[3] < 2 {
        return Err(nn::Error::arg(
            "total_variation",
            format!("expects an image (1, C, H >= 2, W >= 2), got {s:?}"),
        ));
    }
    let dy = x.narrow(2, 1, s[2] - 1)?.sub(&x.narrow(2, 0, s[2] - 1)?)?;
    let dx = x.narrow(3, 1, s[3] - 1)?.sub(&x.narrow(3, 0, s[3] - 1)?)?;
    Ok(dy.sqr().sum()?.add(&dx.sqr().sum()?)?)
}
