//! The `cnn` command: every user-facing task of the workspace (face recognition from photos,
//! training and measuring face embeddings, one-shot learning, style transfer, CNN inspection,
//! ECG and volume networks, the demo). `cargo xtask` runs the same commands from a checkout.
//!
//! Command modules depend on [`args`] (flag parsers) and `common` (embedder flags, progress,
//! charts), not on each other; `faces` dispatches its subcommands to `recognise` and
//! `studies`, and `demo` composes the others.

// A command-line tool: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod args;
mod common;
mod demo;
mod ecg;
mod faces;
mod group;
mod lfw;
mod oneshot;
mod recognise;
mod serve;
mod studies;
mod style;
mod train;
mod visualize;
mod volumes;

use anyhow::Result;
use clap::Subcommand;

/// The user commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job on bundled data: train a face embedding on ORL people 1-30, verify and
    /// recognise (one-shot) the 10 unseen people, write a report.
    Demo(Box<demo::DemoArgs>),
    /// Face embeddings: train (triplet, contrastive, DeepFace heads) and evaluate (LFW, a
    /// folder per person).
    Faces {
        /// Which task.
        #[command(subcommand)]
        what: faces::FacesCommand,
    },
    /// One-shot learning on Omniglot: train on the background set, evaluate on the official
    /// 20-way runs and random episodes.
    Oneshot {
        /// Which task.
        #[command(subcommand)]
        what: oneshot::OneShotCommand,
    },
    /// Heartbeat classification (N, S, V, F) with a 1D CNN on MIT-BIH records.
    Ecg {
        /// Which task.
        #[command(subcommand)]
        what: ecg::EcgCommand,
    },
    /// A 3D CNN on MedMNIST volumes (AdrenalMNIST3D), official train/val/test split.
    Volumes {
        /// Which task.
        #[command(subcommand)]
        what: volumes::VolumesCommand,
    },
    /// What a CNN's units respond to (Zeiler & Fergus): filters, top-9 patches, deconvnet
    /// projections, occlusion maps, an HTML index.
    Visualize(visualize::VisualizeArgs),
    /// Repaint a photo in the style of one or more paintings (Gatys et al.).
    Style(Box<style::StyleArgs>),
    /// The face-recognition and style service: a REST API (OpenAPI at /v1/openapi.json) and
    /// a web page, on a folder (one worker) or PostgreSQL (several workers).
    Serve(Box<serve::ServeArgs>),
    /// The service's API keys: create (printed once), list, revoke.
    ServeKeys {
        /// Which task.
        #[command(subcommand)]
        what: serve::KeysCommand,
    },
    /// Train a model.
    Train {
        /// Which task.
        #[command(subcommand)]
        what: train::TrainCommand,
    },
}

/// ORL person `person`'s photo `image` (grey, 92 x 112) enlarged 1.5 times on a plain canvas
/// as a photo would show a head (the demo's group photo and the service tests use these).
///
/// # Errors
/// A missing or unreadable ORL image (named).
pub fn orl_portrait(orl: &std::path::Path, person: &str, image: usize) -> Result<image::RgbImage> {
    Ok(group::portrait(&group::orl_face(orl, person, image)?, 1.5))
}

/// Runs one user command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Demo(args) => demo::demo(&args),
        Command::Faces { what } => faces::faces(what),
        Command::Oneshot { what } => oneshot::oneshot(what),
        Command::Ecg { what } => ecg::ecg(what),
        Command::Volumes { what } => volumes::volumes(what),
        Command::Visualize(args) => visualize::visualize(&args),
        Command::Style(args) => style::style(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::ServeKeys { what } => serve::keys(&what),
        Command::Train { what } => train::run(what),
    }
}

/// Parses the command line into `C` and runs it with `task` as a command-line program does:
/// on a worker of rayon's pool, a tensor that cannot be allocated reported as an error, the
/// error's chain printed on one line, a closed standard output (`... | head`) ending quietly.
/// The exit code says whether it succeeded.
pub fn main_with<C: clap::Parser + Send>(
    task: impl FnOnce(C) -> Result<()> + Send,
) -> std::process::ExitCode {
    quiet_on_closed_pipe();
    let command = C::parse();
    // The whole command runs on a worker of rayon's pool: parallel loops started there run
    // inline or are stolen, instead of every one of the thousands of tensor ops handing its
    // work from the main thread to the pool and sleeping until it is done (two context
    // switches per op; 14 % of a 1-thread style transfer).
    let result = match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| task(command))))
            .unwrap_or_else(|payload| match payload.downcast::<tensor::OutOfMemory>() {
                Ok(oom) => Err(anyhow::anyhow!(
                    "{oom}; the run needs more memory than this machine (or its limit) allows: use a smaller --size, --batch or model"
                )),
                Err(other) => std::panic::resume_unwind(other),
            }),
        Err(e) => Err(anyhow::anyhow!("cannot start the thread pool: {e}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message chain, not a backtrace: errors here are about the user's input.
            eprintln!("error: {}", message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each thing said once: a cause whose text the message
/// already holds (a file error that names its OS error) is not repeated, and a cause that
/// starts with a path the message already names ("loading X" then "X: not found") drops it.
pub fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let mut part = cause.to_string();
        if let Some((head, rest)) = part.split_once(": ")
            && head.contains(['/', '.'])
            && text.contains(head)
        {
            part = rest.to_string();
        }
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

/// `println!` panics when standard output is a pipe whose reader has gone (`... | head`).
/// Like any command-line tool, end quietly then instead of printing a panic.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        // A tensor that could not be allocated is reported by `main_with` as an error.
        if info
            .payload()
            .downcast_ref::<tensor::OutOfMemory>()
            .is_some()
        {
            return;
        }
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e = anyhow::Error::new(nn::Error::io("g.gallery", io));
        assert_eq!(super::message(&e), "g.gallery: No space left on device");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::message(&e), "outer: inner");
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e =
            anyhow::Error::new(nn::Error::io("m.ckpt", missing)).context("loading model m.ckpt");
        assert_eq!(super::message(&e), "loading model m.ckpt: No such file");
    }
}
