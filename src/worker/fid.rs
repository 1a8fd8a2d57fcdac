//! `hwrun-torch fid`: the computation behind `hwrun fid`, with pytorch-fid's protocol and
//! output (`FID:  <value>` on stdout, like `python -m pytorch_fid A B`).
//!
//! Each path is an image folder (read like pytorch-fid), a dataset artifact directory, or a
//! `.npz` of statistics; `--save-stats DIR OUT.npz` writes the statistics of DIR instead and,
//! like pytorch-fid, refuses to overwrite OUT. The network is loaded only when some path needs
//! featurising.

use anyhow::{bail, Context};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use super::serve::resolve;
use super::DeviceRequest;
use crate::cli::args::FidArgs;
use crate::error::exit_code;
use crate::metrics::fid::{frechet_distance, FidStatistics};
use crate::metrics::inception_features::{
    featurise_all, load_image_set, FeatureKind, ImageSetError,
};
use crate::models::inception::{block_of_dims, FidInception, WEIGHTS_FILE, WEIGHTS_URL};

#[derive(Debug, Parser)]
#[command(name = "hwrun-torch fid")]
struct WorkerFid {
    #[command(flatten)]
    args: FidArgs,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Runs the command; the exit code is 0 on success, 1 when the computation failed, 2 for bad
/// arguments.
pub fn main(args: impl Iterator<Item = String>) -> i32 {
    let parsed = match WorkerFid::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            return exit_code::INVALID_INPUT;
        }
    };
    match run(&parsed) {
        Ok(()) => exit_code::SUCCESS,
        Err(err) => {
            eprint!("{}", crate::error::render_error(&err));
            exit_code::STAGE_FAILED
        }
    }
}

fn run(cmd: &WorkerFid) -> anyhow::Result<()> {
    let args = &cmd.args;
    block_of_dims(args.dims)?;
    let inputs = if args.save_stats {
        &args.paths[..1]
    } else {
        &args.paths[..]
    };
    for path in inputs {
        if !path.exists() {
            bail!("invalid path: {path} does not exist");
        }
    }
    let request = DeviceRequest::parse(&cmd.device).with_context(|| {
        format!(
            "unknown device `{}`: use `cpu`, `cuda` or `cuda:N`",
            cmd.device
        )
    })?;
    let device = resolve(request)?;
    let mut model = None;
    if args.save_stats {
        let (input, output) = (&args.paths[0], &args.paths[1]);
        if output.exists() {
            bail!("existing output file: {output} (pytorch-fid does not overwrite it either)");
        }
        eprintln!("Saving statistics for {input}");
        let stats = statistics_of(input, cmd, device, &mut model)?;
        stats.write_npz(output)?;
        return Ok(());
    }
    let first = statistics_of(&args.paths[0], cmd, device, &mut model)?;
    let second = statistics_of(&args.paths[1], cmd, device, &mut model)?;
    let fid = frechet_distance(&first, &second)?;
    println!("FID:  {fid}");
    Ok(())
}

/// The statistics of one path: read from `.npz`, or featurised (loading the network once).
fn statistics_of(
    path: &Utf8Path,
    cmd: &WorkerFid,
    device: tch::Device,
    model: &mut Option<FidInception>,
) -> anyhow::Result<FidStatistics> {
    if path.extension() == Some("npz") {
        return Ok(FidStatistics::read_npz(path)?);
    }
    let images = load_image_set(path, ProgressBar::hidden())
        .with_context(|| format!("reading the images of {path}"))?;
    if model.is_none() {
        let weights = weights_path(cmd.args.weights.as_deref())?;
        *model = Some(FidInception::load(&weights, device)?);
    }
    let network = model
        .as_ref()
        .context("the Inception network did not load")?;
    let bar = ProgressBar::new(images.len() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images, eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(path.to_string());
    let kind = FeatureKind::Fid {
        dims: cmd.args.dims,
    };
    let features = featurise_all(network, &images, cmd.args.batch_size, kind, |done| {
        bar.set_position(done as u64);
        Ok::<(), ImageSetError>(())
    })?;
    bar.finish_and_clear();
    let stats = FidStatistics::of_features(&features)?;
    if let Some(warning) = stats.few_samples_warning() {
        eprintln!("warning: {path}: {warning}");
    }
    Ok(stats)
}

/// `--weights`, or the file pytorch-fid downloads into torch hub's cache.
fn weights_path(given: Option<&Utf8Path>) -> anyhow::Result<Utf8PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    let torch_home = std::env::var("TORCH_HOME")
        .map(Utf8PathBuf::from)
        .or_else(|_| {
            let cache = std::env::var("XDG_CACHE_HOME")
                .map(Utf8PathBuf::from)
                .or_else(|_| {
                    std::env::var("HOME").map(|home| Utf8PathBuf::from(home).join(".cache"))
                })?;
            Ok::<_, std::env::VarError>(cache.join("torch"))
        });
    let default = torch_home.map(|home| home.join("hub").join("checkpoints").join(WEIGHTS_FILE));
    match default {
        Ok(path) if path.is_file() => Ok(path),
        Ok(path) => bail!(
            "no FID Inception weights: pass `--weights FILE`, or put {WEIGHTS_FILE} at {path} (where pytorch-fid keeps it); \
             download it from {WEIGHTS_URL} (sha256 starts with 6726825d)"
        ),
        Err(_) => bail!("no FID Inception weights: pass `--weights FILE` (download {WEIGHTS_URL})"),
    }
}
