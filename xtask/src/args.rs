//! What several commands share: parsing list-valued options, loading what `train` wrote.

use anyhow::{Context, Result};

/// `"32,64,128"` -> `[32, 64, 128]` (or `"0.7,0.3"` -> floats), naming the option in the error.
pub(crate) fn parse_list<T: std::str::FromStr>(option: &str, text: &str) -> Result<Vec<T>>
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

/// `"56x46"` -> `(56, 46)` (height, width).
pub(crate) fn parse_size(text: &str) -> Result<(u32, u32)> {
    let (h, w) = text
        .split_once('x')
        .with_context(|| format!("--size wants HxW, got {text:?}"))?;
    Ok((
        h.parse()
            .with_context(|| format!("bad height in --size {text:?}"))?,
        w.parse()
            .with_context(|| format!("bad width in --size {text:?}"))?,
    ))
}

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
