//! `download`: fetches one file over HTTP(S) or from the local disk, checks its pinned checksum and
//! optionally unpacks it.
//!
//! Inputs: none. Output: the file in the output directory under `filename` (default: the last
//! segment of `source`); with `unpack = true` the archive's contents instead (the archive itself
//! is not kept, a `.gz`/`.bz2` file becomes the name without the extension). The summary line
//! reads `<file>: <size>, sha256 ok`; the metric `bytes` is the downloaded size.
//!
//! A checksum (`sha256` or `md5`, or both) is required unless `verify = false`, which logs a
//! warning. The cache key covers `source`, the checksums, `filename` and `unpack`, so two
//! recipes naming the same file share one entry; `retries`, `timeout_secs`, `backoff_ms` and
//! `verify` only change how hard hwrun tries and are left out. For a local `source` (a path or a
//! `file://` URL, relative to the directory hwrun runs in) the file's content is part of the key
//! too. A remote file is trusted to stay what its checksum says; with `verify = false` a changed
//! server file is not noticed until the cache entry is removed.
//!
//! Transfers that break off are resumed with HTTP `Range` requests (or restarted when the server
//! ignores them) for up to `retries` further attempts, waiting `backoff_ms`, then twice that, and
//! so on. When a host cannot be reached (an offline cluster node, a dead mirror), download the
//! file by hand and point `source` at it: the checksum still guards it.
//!
//! ```toml
//! [stages.mnist_train_images]
//! kind = "download"
//! source = "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
//! md5 = "f68b3c2dcbeaaa9fbdd348bbdeb94873"
//! unpack = true                       # leaves train-images-idx3-ubyte
//!
//! [stages.mnist_train_labels]
//! kind = "download"
//! source = "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz"
//! md5 = "d53e105ee54ea40749a09fcbcd1e9432"
//! unpack = true
//!
//! [stages.svhn_train]
//! kind = "download"
//! source = "http://ufldl.stanford.edu/housenumbers/train_32x32.mat"
//! md5 = "e26dedcc434d2e4c54c9b2d4a06d8373"
//! filename = "svhn_train.mat"         # optional; default train_32x32.mat
//! retries = 5                         # default 3
//! max_unpacked_bytes = 2_000_000_000  # with unpack = true; default 100x the archive, >= 1 GiB
//! timeout_secs = 60                   # default 30, per connect and per read
//! backoff_ms = 2000                   # default 1000, doubled per retry
//!
//! [stages.course_data]
//! kind = "download"
//! source = "/data/hw2_data.zip"       # a file fetched by hand; file:///data/hw2_data.zip works too
//! verify = false                      # no checksum pinned: logs a warning
//! unpack = true
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use camino::Utf8PathBuf;
use indicatif::{HumanBytes, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::download::{
    self, DownloadError, Fetched, HttpOptions, Md5Hex, Observer, Pinned, Request, Sha256Hex, Source,
};
use crate::stage::{Cancelled, Inputs, ParamError, Stage, StageContext, StageOutcome, StageShape};

/// Progress bar layout while bytes move: position, total, rate and time left.
const BYTES_TEMPLATE: &str =
    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";

/// The `download` stage kind.
pub struct DownloadStage;

/// Parameters of a `download` stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadParams {
    /// An `https://`, `http://` or `file://` URL, or a local path (`url` is accepted as well).
    #[serde(alias = "url")]
    pub source: String,
    /// Expected SHA-256 of the file: 64 hex digits, or the first 8 or more (as torch.hub file names carry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
    /// Expected MD5 of the file, 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<Md5Hex>,
    /// `false` accepts a file without a pinned checksum (with a warning); pinned ones are always checked.
    #[serde(default = "default_verify", skip_serializing)]
    pub verify: bool,
    /// Name of the file in the output directory; default: the last segment of `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Unpack the archive (.gz, .bz2, .zip, .tar, .tar.gz/.tgz, .tar.bz2) instead of keeping it.
    #[serde(default)]
    pub unpack: bool,
    /// Unpack at most this many bytes (default 100 times the archive's size, at least 1 GiB):
    /// a decompression bomb fails the stage instead of filling the disk.
    #[serde(default, skip_serializing)]
    pub max_unpacked_bytes: Option<u64>,
    /// Further attempts after a failed transfer.
    #[serde(default = "default_retries", skip_serializing)]
    pub retries: u32,
    /// Seconds allowed for connecting and for each read before the attempt fails.
    #[serde(default = "default_timeout_secs", skip_serializing)]
    pub timeout_secs: u64,
    /// Milliseconds to wait before the first retry, doubled for each further one.
    #[serde(default = "default_backoff_ms", skip_serializing)]
    pub backoff_ms: u64,
}

fn default_verify() -> bool {
    true
}
fn default_retries() -> u32 {
    3
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_backoff_ms() -> u64 {
    1000
}

impl DownloadParams {
    /// The request these parameters describe.
    fn request(&self) -> Result<Request, DownloadError> {
        let source = Source::parse(&self.source)?;
        let filename = match &self.filename {
            Some(name) => name.clone(),
            None => source
                .default_filename()
                .ok_or_else(|| DownloadError::FilenameMissing {
                    source_text: self.source.clone(),
                })?,
        };
        let request = Request {
            source,
            filename,
            pinned: Pinned {
                sha256: self.sha256.clone(),
                md5: self.md5.clone(),
            },
            verify: self.verify,
            unpack: self.unpack,
            max_unpacked_bytes: self.max_unpacked_bytes,
            http: HttpOptions {
                retries: self.retries,
                timeout: Duration::from_secs(self.timeout_secs.max(1)),
                backoff: Duration::from_millis(self.backoff_ms),
            },
        };
        request.validate()?;
        Ok(request)
    }
}

impl Stage for DownloadStage {
    type Params = DownloadParams;
    const KIND: &'static str = "download";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Fetch a file (https, http, file or local path), verify its checksum, optionally unpack it";
    const INPUTS: Inputs = Inputs::Named(&[]);
    const EXAMPLE: &'static str = r#"name = "example"

[stages.mnist_train_images]
kind = "download"
source = "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
md5 = "f68b3c2dcbeaaa9fbdd348bbdeb94873"
unpack = true             # leaves train-images-idx3-ubyte
retries = 5               # default 3
timeout_secs = 60         # default 30, per connect and per read
"#;

    fn shape(params: &DownloadParams) -> StageShape {
        let external_paths = match Source::parse(&params.source) {
            Ok(Source::Local(path)) => Utf8PathBuf::from_path_buf(path).into_iter().collect(),
            _ => Vec::new(),
        };
        StageShape {
            external_paths,
            ..StageShape::default()
        }
    }

    /// Everything [`Request::validate`] checks, at plan time: a missing checksum, a bad
    /// `filename`, unpacking a file that is no archive.
    fn validate(params: &DownloadParams) -> Result<(), ParamError> {
        params.request().map(drop).map_err(|error| {
            let field = match &error {
                DownloadError::FilenameInvalid { .. } if params.filename.is_some() => "filename",
                DownloadError::ArchiveUnknown { .. } => "unpack",
                _ => "source",
            };
            ParamError {
                path: vec![field.to_owned()],
                message: error.to_string(),
            }
        })
    }

    fn run(params: DownloadParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let request = params.request()?;
        if request.pinned.is_empty() {
            let warning = format!(
                "no checksum pinned for `{}` (verify = false): its content is not checked",
                params.source
            );
            tracing::warn!(stage = %ctx.name(), "{warning}");
            ctx.log_sink().line(&format!("warning: {warning}"));
        }
        let fetched = {
            let observer = ContextObserver::new(ctx);
            download::fetch(&request, ctx.out_dir().as_std_path(), &observer)
        };
        let fetched = fetched.map_err(|err| match err {
            DownloadError::Cancelled => anyhow::Error::new(Cancelled),
            other => anyhow::Error::new(other),
        })?;
        let summary = summary_line(&request, &fetched);
        ctx.log(format!("{} -> {summary}", params.source));
        Ok(StageOutcome {
            metrics: metrics(&fetched),
            summary: vec![summary],
            ..StageOutcome::default()
        })
    }
}

/// `<file>: <size>, <checksums> ok[, unpacked <n> files (<size>)]`.
fn summary_line(request: &Request, fetched: &Fetched) -> String {
    let mut line = format!(
        "{}: {}, {}",
        request.filename,
        HumanBytes(fetched.bytes),
        request.pinned.verdict()
    );
    if let Some(unpacked) = &fetched.unpacked {
        let noun = if unpacked.files == 1 { "file" } else { "files" };
        line.push_str(&format!(
            ", unpacked {} {noun} ({})",
            unpacked.files,
            HumanBytes(unpacked.bytes)
        ));
        if unpacked.skipped_links > 0 {
            line.push_str(&format!(", {} links skipped", unpacked.skipped_links));
        }
    }
    line
}

fn metrics(fetched: &Fetched) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::from([("bytes".to_owned(), fetched.bytes as f64)]);
    if let Some(unpacked) = &fetched.unpacked {
        metrics.insert("unpacked_bytes".to_owned(), unpacked.bytes as f64);
        metrics.insert("unpacked_files".to_owned(), unpacked.files as f64);
    }
    metrics
}

/// Routes download progress to the stage's bar (in bytes) and notes to its log; restores the
/// bar's previous style when dropped.
struct ContextObserver<'a> {
    ctx: &'a StageContext,
    previous: ProgressStyle,
}

impl<'a> ContextObserver<'a> {
    fn new(ctx: &'a StageContext) -> Self {
        let previous = ctx.progress().style();
        if let Ok(style) = ProgressStyle::with_template(BYTES_TEMPLATE) {
            ctx.progress().set_style(style.progress_chars("=> "));
        }
        ContextObserver { ctx, previous }
    }
}

impl Drop for ContextObserver<'_> {
    fn drop(&mut self) {
        self.ctx.progress().set_style(self.previous.clone());
    }
}

impl Observer for ContextObserver<'_> {
    fn phase(&self, message: &str, total: Option<u64>) {
        self.ctx.start_phase(message, total.unwrap_or(0));
        if total.is_none() {
            self.ctx.progress().unset_length();
        }
    }
    fn position(&self, bytes: u64) {
        self.ctx.progress().set_position(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.ctx.progress().inc(bytes);
    }
    fn note(&self, line: &str) {
        self.ctx.log(line);
    }
    fn is_cancelled(&self) -> bool {
        self.ctx.check_cancelled().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{Registered, StageKind};

    fn check(text: &str) -> Result<crate::stage::CheckedParams, crate::stage::ParamError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        Registered::<DownloadStage>::new().check(&table)
    }

    const MNIST: &str = r#"
        source = "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz"
        md5 = "d53e105ee54ea40749a09fcbcd1e9432"
    "#;

    #[test]
    fn params_parse_with_defaults() {
        let params: DownloadParams = toml::from_str(MNIST).unwrap();
        assert_eq!(
            (params.retries, params.timeout_secs, params.backoff_ms),
            (3, 30, 1000)
        );
        assert!(params.verify && !params.unpack);
        assert_eq!(
            params.request().unwrap().filename,
            "train-labels-idx1-ubyte.gz"
        );
    }

    #[test]
    fn unknown_keys_and_bad_digests_are_rejected() {
        let typo = check(&format!("{MNIST}\nretry = 2")).unwrap_err();
        assert!(typo.message.contains("retry"), "{}", typo.message);
        let short = check("source = \"https://x/y\"\nsha256 = \"abc\"").unwrap_err();
        assert_eq!(short.path, vec!["sha256".to_owned()]);
    }

    #[test]
    fn key_covers_what_the_file_is_not_how_hard_we_try() {
        let base = check(MNIST).unwrap().canonical;
        let patient = check(&format!(
            "{MNIST}\nretries = 9\ntimeout_secs = 5\nbackoff_ms = 1"
        ))
        .unwrap();
        assert_eq!(base, patient.canonical);
        let as_url = MNIST.replace("source", "url");
        assert_eq!(base, check(&as_url).unwrap().canonical);
        let upper = MNIST.replace(
            "d53e105ee54ea40749a09fcbcd1e9432",
            "D53E105EE54EA40749A09FCBCD1E9432",
        );
        assert_eq!(base, check(&upper).unwrap().canonical);
        assert_ne!(
            base,
            check(&format!("{MNIST}\nunpack = true")).unwrap().canonical
        );
        assert_ne!(
            base,
            check(&format!("{MNIST}\nfilename = \"l.gz\""))
                .unwrap()
                .canonical
        );
    }

    #[test]
    fn local_sources_are_external_paths() {
        let local = check("source = \"file:///data/hw2_data.zip\"\nverify = false").unwrap();
        assert_eq!(
            local.shape.external_paths,
            vec![Utf8PathBuf::from("/data/hw2_data.zip")]
        );
        assert!(check(MNIST).unwrap().shape.external_paths.is_empty());
    }

    #[test]
    fn missing_checksum_is_refused_before_running() {
        let params: DownloadParams = toml::from_str("source = \"https://x/y.bin\"").unwrap();
        assert!(matches!(
            params.request(),
            Err(DownloadError::ChecksumMissing { .. })
        ));
        let err = check("source = \"https://x/y.bin\"").unwrap_err();
        assert_eq!(err.path, ["source"]);
        let err = check(&format!("{MNIST}\nfilename = \"../x\"")).unwrap_err();
        assert_eq!(err.path, ["filename"]);
    }
}
