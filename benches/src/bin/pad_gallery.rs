//! Pads a gallery file with synthetic people (one random unit-norm encoding each), for load
//! tests of search on large galleries: `pad_gallery IN OUT COUNT [SEED]`. The real people of
//! IN stay first and findable; the synthetic ones are far from every real face (random
//! directions in 128-D are nearly orthogonal), so answers do not change, only the work.

// A command-line tool: printing is its job.
#![allow(clippy::print_stdout)]

use faces::gallery::{Enrolled, Gallery, Identity};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output, count, rest @ ..] = &args[..] else {
        return Err("usage: pad_gallery IN OUT COUNT [SEED]".into());
    };
    let count: usize = count.parse().map_err(|e| format!("COUNT {count:?}: {e}"))?;
    let mut state: u64 = rest
        .first()
        .map_or(Ok(1), |s| s.parse())
        .map_err(|e| format!("SEED: {e}"))?;
    let mut g = Gallery::load(input.as_ref()).map_err(|e| e.to_string())?;
    // xorshift64* and Box-Muller: plain and reproducible, no dependency.
    let mut uniform = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..count {
        let mut v: Vec<f64> = (0..g.dim)
            .map(|_| {
                let (u1, u2) = (uniform().max(1e-300), uniform());
                (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        // Pushed directly: the names are new by construction (`add_image` would look each
        // one up among all the others).
        g.identities.push(Identity {
            name: format!("synthetic-{i:06}"),
            tau: None,
            images: vec![Enrolled {
                source: "synthetic".into(),
                content_hash: format!("synthetic-{i}"),
                encoding: v.iter().map(|&x| x as f32).collect(),
            }],
        });
    }
    g.save(output.as_ref()).map_err(|e| e.to_string())?;
    println!(
        "{output}: {} people, {} encodings",
        g.identities.len(),
        g.len()
    );
    Ok(())
}
