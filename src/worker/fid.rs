//! `hwrun-torch fid`: the computation behind `hwrun fid`, with pytorch-fid's protocol and
//! output (`FID:  <value>` on stdout, like `python -m pytorch_fid A B`).
//!
//! Each path is an image folder (read like pytorch-fid), a dataset artifact directory, or a
//! `.npz` of statistics; `--save-stats DIR OUT.npz` writes the statistics of DIR instead and,
//! like pytorch-fid, refuses to overwrite OUT. The network is loaded only when some path needs
//! featurising.

use anyhow::{bail, Context};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Parser};
use indicatif::{ProgressBar, ProgressStyle};

use super::serve::resolve;
use super::DeviceRequest;
use crate::error::exit_code;
use crate::metrics::fid::{frechet_distance, FidStatistics};
use crate::metrics::inception_features::{
    featurise_all, load_image_set, FeatureKind, ImageSetError,
};
use crate::models::inception::{block_of_dims, FidInception, WEIGHTS_FILE, WEIGHTS_URL};

/// pytorch-fid's command line, which `hwrun fid` takes from the user and hands on to the worker.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct FidOptions {
    /// Two image folders or `.npz` statistics; with `--save-stats`, a folder and the `.npz` to write.
    #[arg(value_name = "PATH", num_args = 2, required = true)]
    pub paths: Vec<Utf8PathBuf>,

    /// The FID Inception weights (`pt_inception-2015-12-05-6726825d.pth` or `.safetensors`);
    /// default: where pytorch-fid keeps them (`$TORCH_HOME/hub/checkpoints`).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<Utf8PathBuf>,

    /// Feature dimensions: 64, 192, 768 or 2048 (the pool features).
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub dims: i64,

    /// Images per forward pass.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub batch_size: usize,

    /// Write the statistics of the first path's images to the second path instead.
    #[arg(long)]
    pub save_stats: bool,
}

/// What `hwrun fid` asks of the worker: the user's options and the device (hwrun's global
/// `--device`). The worker reads it from its command line and [`FidRequest::args`] writes that
/// command line, so both ends of it live here.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(name = "hwrun-torch fid")]
pub struct FidRequest {
    #[command(flatten)]
    pub options: FidOptions,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceRequest,
}

impl FidRequest {
    /// The worker's command line after `hwrun-torch fid`.
    pub fn args(&self) -> Vec<String> {
        let options = &self.options;
        let mut args = vec![
            "--device".to_owned(),
            self.device.arg(),
            "--dims".to_owned(),
            options.dims.to_string(),
            "--batch-size".to_owned(),
            options.batch_size.to_string(),
        ];
        if let Some(weights) = &options.weights {
            args.extend(["--weights".to_owned(), weights.to_string()]);
        }
        if options.save_stats {
            args.push("--save-stats".to_owned());
        }
        args.push("--".to_owned());
        args.extend(options.paths.iter().map(Utf8PathBuf::to_string));
        args
    }
}

fn parse_device(text: &str) -> Result<DeviceRequest, String> {
    DeviceRequest::parse(text)
        .ok_or_else(|| format!("unknown device `{text}`: use `cpu`, `cuda` or `cuda:N`"))
}

/// Runs the command; the exit code is 0 on success, 1 when the computation failed, 2 for bad
/// arguments.
pub fn main(args: impl Iterator<Item = String>) -> i32 {
    let request = match FidRequest::try_parse_from(args) {
        Ok(request) => request,
        Err(err) => {
            let _ = err.print();
            return exit_code::INVALID_INPUT;
        }
    };
    match run(&request) {
        Ok(()) => exit_code::SUCCESS,
        Err(err) => {
            eprint!("{}", crate::error::render_error(&err));
            exit_code::STAGE_FAILED
        }
    }
}

fn run(request: &FidRequest) -> anyhow::Result<()> {
    let args = &request.options;
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
    let device = resolve(request.device)?;
    let mut model = None;
    if args.save_stats {
        let (input, output) = (&args.paths[0], &args.paths[1]);
        if output.exists() {
            bail!("existing output file: {output} (pytorch-fid does not overwrite it either)");
        }
        eprintln!("Saving statistics for {input}");
        let stats = statistics_of(input, args, device, &mut model)?;
        stats.write_npz(output)?;
        return Ok(());
    }
    let first = statistics_of(&args.paths[0], args, device, &mut model)?;
    let second = statistics_of(&args.paths[1], args, device, &mut model)?;
    let fid = frechet_distance(&first, &second)?;
    println!("FID:  {fid}");
    Ok(())
}

/// The statistics of one path: read from `.npz`, or featurised (loading the network once).
fn statistics_of(
    path: &Utf8Path,
    args: &FidOptions,
    device: tch::Device,
    model: &mut Option<FidInception>,
) -> anyhow::Result<FidStatistics> {
    if path.extension() == Some("npz") {
        return Ok(FidStatistics::read_npz(path)?);
    }
    let images = load_image_set(path, ProgressBar::hidden())
        .with_context(|| format!("reading the images of {path}"))?;
    if model.is_none() {
        let weights = weights_path(args.weights.as_deref())?;
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
    let kind = FeatureKind::Fid { dims: args.dims };
    let features = featurise_all(network, &images, args.batch_size, kind, |done| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_from_its_command_line() {
        let request = FidRequest {
            options: FidOptions {
                paths: vec!["a dir".into(), "-b.npz".into()],
                weights: Some("w.pth".into()),
                dims: 64,
                batch_size: 7,
                save_stats: true,
            },
            device: DeviceRequest::Cuda(1),
        };
        let args = std::iter::once("fid".to_owned()).chain(request.args());
        assert_eq!(FidRequest::try_parse_from(args).unwrap(), request);
    }
}
