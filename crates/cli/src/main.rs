//! `cnn`: face recognition from photos, face embeddings, one-shot learning, style transfer,
//! CNN inspection, ECG and volume networks on a pure-Rust CPU tensor core.

use clap::Parser;

/// Faces, style transfer and CNNs on the CPU, in pure Rust.
#[derive(Parser, Debug)]
#[command(name = "cnn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: cli::Command,
}

fn main() -> std::process::ExitCode {
    cli::main_with(|c: Cli| cli::run(c.command))
}
