//! What several commands share: parsing list-valued options, loading what `train` wrote.

use anyhow::{Context, Result};

/// `"32,64,128"` -> `[32, 64, 128]` (or `"0.7,0.3"` -> floats), naming the option in the error.
pub fn parse_list<T: std::str::FromStr>(option: &str, text: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.split(',')
        .map(|w| {
            w.trim()
                .parse()
                .with_context(|| format!("bad {option} {text:?}: {w:?} is not a number"))
        })
        .collect()
}

/// `"56x46"` -> `(56, 46)` (height, width), each side `1..=MAX_INPUT_SIDE`.
pub fn parse_size(text: &str) -> Result<(u32, u32)> {
    nn::data::parse_hw(text, MAX_INPUT_SIDE).map_err(|e| anyhow::anyhow!("--size {e}"))
}

/// The largest side `--size` accepts (a network input, not a photo).
pub(crate) const MAX_INPUT_SIDE: u32 = 4096;

/// Loads the weights a `train` command wrote to `path` into `store`, refusing a checkpoint made
/// for another model (`config_text` differs); `command` names the command that writes it.
pub(crate) fn load_trained(
    store: &mut nn::ParamStore,
    path: &std::path::Path,
    config_text: &str,
    command: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let ck = nn::checkpoint::load(path)
        .with_context(|| format!("loading {} (run `{command}` first)", path.display()))?;
    anyhow::ensure!(
        ck.config == config_text,
        "{} holds another model: {}",
        path.display(),
        ck.config
    );
    ck.apply_to(store)?;
    Ok(())
}

/// A number from a flag's text, or the message clap shows.
fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

/// clap parser of a learning rate: a finite number in `(0, 1]` (above 1 every optimizer here
/// diverges or collapses the embeddings; negative climbs the loss).
pub(crate) fn learning_rate(text: &str) -> Result<f32, String> {
    let v: f32 = number(text)?;
    if !(v.is_finite() && v > 0.0 && v <= 1.0) {
        return Err(format!(
            "{v} is outside (0, 1]; usual values are 1e-4 to 1e-2 for Adam, 0.01 to 0.1 for SGD"
        ));
    }
    Ok(v)
}

/// clap parser of a rate or probability: a finite number in `[0, 1]`.
pub(crate) fn fraction(text: &str) -> Result<f64, String> {
    let v: f64 = number(text)?;
    if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
        return Err(format!("{v} is outside [0, 1] (0.01 means 1 %)"));
    }
    Ok(v)
}

/// clap parser of a finite number >= 0 (weight decay, augmentation strengths, margins).
pub(crate) fn non_negative(text: &str) -> Result<f32, String> {
    let v: f32 = number(text)?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{v} must be a finite number >= 0"));
    }
    Ok(v)
}

/// Makes sure an output file can be written before any work starts: its folder is created when
/// missing, and a probe file is written and removed there. `flag` names the option in errors.
pub(crate) fn output_file(path: &std::path::Path, flag: &str) -> Result<()> {
    anyhow::ensure!(
        !path.is_dir(),
        "{flag} {} is a folder; give a file name",
        path.display()
    );
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    output_dir(dir, flag)
}

/// Refuses an output folder inside the data folder a command scans: the output would be read
/// back as data (a class or a person) on this run or the next.
pub(crate) fn output_outside_data(out: &std::path::Path, data: &std::path::Path) -> Result<()> {
    let (Ok(out_abs), Ok(data_abs)) = (std::path::absolute(out), std::fs::canonicalize(data))
    else {
        return Ok(()); // a missing --data is reported by the loader, naming it
    };
    let out_abs = out_abs
        .ancestors()
        .find_map(|a| std::fs::canonicalize(a).ok().map(|c| (a, c)))
        .map_or(out_abs.clone(), |(a, c)| {
            c.join(out_abs.strip_prefix(a).unwrap_or(&out_abs))
        });
    anyhow::ensure!(
        !out_abs.starts_with(&data_abs),
        "--out {} lies inside --data {}: the output would be read as data; choose a folder outside it",
        out.display(),
        data.display()
    );
    Ok(())
}

/// Makes sure files can be written into folder `dir` before any work starts: created when
/// missing, then probed with a file written and removed.
pub(crate) fn output_dir(dir: &std::path::Path, flag: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{flag}: cannot create the folder {}", dir.display()))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("{flag}: cannot write into {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
