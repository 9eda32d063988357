//! `cargo xtask`: the user commands of `cnn` (the `cli` crate) run from a checkout, and the
//! developers' tasks: benchmarks and the FMA peak.

// A command-line tool: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Tasks of the cnn-workspace.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about)]
struct Xtask {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    User(Box<cli::Command>),
    /// Time the issue-2 convolution shapes (forward, forward + backward) with
    /// RAYON_NUM_THREADS threads; print ms and GFLOP/s per shape.
    ConvBench(bench::ConvBenchArgs),
    /// Measure one core's f32 multiply-add peak per vector width.
    FmaPeak,
    /// VGG19 to relu5_1 on one image: forward, and forward + backward to the image (compare
    /// with benches/pytorch/vgg_bench.py).
    VggBench(bench::VggBenchArgs),
    /// Images per second of training steps of the classifier network (compare with
    /// benches/pytorch/train_bench.py).
    TrainBench(bench::TrainBenchArgs),
}

fn main() -> std::process::ExitCode {
    cli::main_with(|x: Xtask| run(x.command))
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::User(c) => cli::run(*c),
        Command::ConvBench(args) => bench::conv_bench(&args),
        Command::TrainBench(args) => bench::train_bench(&args),
        Command::VggBench(args) => bench::vgg_bench(&args),
        Command::FmaPeak => {
            bench::fma_peak();
            Ok(())
        }
    }
}
