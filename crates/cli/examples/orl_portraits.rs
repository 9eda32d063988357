//! Writes ORL portraits as photos (`sP-I.png`: person P, image I, enlarged on a plain canvas
//! as the demo and the service tests make them) for scripts that need photos with faces:
//! `cargo run -p cli --example orl_portraits -- ORL_DIR OUT_DIR`.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, orl, out] = &args[..] else {
        anyhow::bail!("usage: orl_portraits ORL_DIR OUT_DIR");
    };
    std::fs::create_dir_all(out)?;
    for p in 1..=10 {
        for i in 1..=10 {
            let img = cli::orl_portrait(orl.as_ref(), &format!("s{p}"), i)?;
            img.save(std::path::Path::new(out).join(format!("s{p}-{i}.png")))?;
        }
    }
    Ok(())
}
