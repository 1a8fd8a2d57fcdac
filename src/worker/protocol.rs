//! Messages between the scheduler and the worker.

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use crate::stage::{InputArtifact, StageOutcome};

/// Which device the user asked for; the worker resolves it, since only it loads libtorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRequest {
    /// CUDA device 0 when available, the CPU otherwise.
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceRequest {
    /// Parses `--device`: `cpu`, `cuda`, `cuda:N`.
    pub fn parse(text: &str) -> Option<DeviceRequest> {
        match text {
            "auto" => Some(DeviceRequest::Auto),
            "cpu" => Some(DeviceRequest::Cpu),
            "cuda" => Some(DeviceRequest::Cuda(0)),
            other => other
                .strip_prefix("cuda:")?
                .parse()
                .ok()
                .map(DeviceRequest::Cuda),
        }
    }

    /// The `--device` text that [`DeviceRequest::parse`] reads back as this request.
    pub fn arg(self) -> String {
        match self {
            DeviceRequest::Auto => "auto".to_owned(),
            DeviceRequest::Cpu => "cpu".to_owned(),
            DeviceRequest::Cuda(index) => format!("cuda:{index}"),
        }
    }
}

impl std::fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("cuda if available, else cpu"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Everything the worker needs to run one stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRequest {
    pub kind: String,
    /// The stage's parameter table as TOML text.
    pub params: String,
    pub name: String,
    pub out_dir: Utf8PathBuf,
    pub log_file: Utf8PathBuf,
    pub inputs: BTreeMap<String, InputArtifact>,
    pub seed: u64,
    pub device: DeviceRequest,
    /// Where the stage may keep resume checkpoints (outside its cache entry).
    #[serde(default)]
    pub checkpoint_dir: Option<Utf8PathBuf>,
}

/// One line of the worker's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The stage's progress bar changed.
    Progress {
        message: String,
        position: u64,
        length: Option<u64>,
    },
    /// The stage succeeded; `device` is where it ran.
    Done {
        outcome: StageOutcome,
        device: String,
    },
    /// The stage failed (or stopped because it was cancelled).
    Failed { error: String, cancelled: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_parse() {
        assert_eq!(DeviceRequest::parse("cpu"), Some(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("cuda"), Some(DeviceRequest::Cuda(0)));
        assert_eq!(DeviceRequest::parse("cuda:1"), Some(DeviceRequest::Cuda(1)));
        assert_eq!(DeviceRequest::parse("gpu"), None);
        for request in [
            DeviceRequest::Auto,
            DeviceRequest::Cpu,
            DeviceRequest::Cuda(2),
        ] {
            assert_eq!(DeviceRequest::parse(&request.arg()), Some(request));
        }
    }

    #[test]
    fn events_are_tagged_json_lines() {
        let line = serde_json::to_string(&WorkerEvent::Failed {
            error: "x".into(),
            cancelled: false,
        })
        .unwrap();
        assert_eq!(line, r#"{"event":"failed","error":"x","cancelled":false}"#);
    }
}
