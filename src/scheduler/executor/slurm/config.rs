//! The recipe's `[slurm]` table: what every job asks the cluster for, with per-stage overrides.
//!
//! ```toml
//! [run]
//! executor = "slurm"      # or `--executor slurm`
//!
//! [slurm]
//! partition = "gpu"       # --partition
//! account = "lab42"       # --account
//! qos = "normal"          # --qos
//! time = "01:00:00"       # --time, per job
//! mem = "8G"              # --mem, per job
//! cpus_per_task = 4       # --cpus-per-task
//! gpus = true             # the cluster has GPUs: stages that compute on a device get --gres=gpu:1
//! extra_args = ["--constraint=a100"]   # passed to sbatch as they are (never through a shell)
//! hwrun = "/shared/bin/hwrun"          # hwrun on the nodes (default: the submitting binary)
//!
//! [slurm.stages.train]    # overrides for the jobs of stage `train`
//! time = "12:00:00"
//! mem = "32G"
//! ```

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use serde::Deserialize;
use toml::{Table, Value};

/// What one job asks for; every field is optional so a stage's table overrides only what it
/// sets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--time`, e.g. `"30:00"` or `"1-00:00:00"`.
    pub time: Option<String>,
    /// `--mem`, e.g. `"8G"`.
    pub mem: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// Whether the cluster has GPUs for device stages (`--gres=gpu:1`).
    pub gpus: Option<bool>,
    /// More sbatch arguments, one per element.
    pub extra_args: Option<Vec<String>>,
}

/// The whole `[slurm]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmConfig {
    pub defaults: Resources,
    /// Overrides by stage name.
    pub stages: BTreeMap<String, Resources>,
    /// The hwrun binary on the compute nodes.
    pub hwrun: Option<Utf8PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmConfigError {
    #[error("`[slurm]` must be a table")]
    NotATable,
    #[error("`[slurm{table}]`: {message}")]
    Invalid { table: String, message: String },
    #[error("`[slurm.stages.{stage}]` names no stage of the recipe (stages: {known})")]
    StageUnknown { stage: String, known: String },
}

impl SlurmConfig {
    /// Reads `[slurm]` from a recipe's root table; absent: all defaults. `stage_names` are the
    /// recipe's stages, which the per-stage tables must name.
    pub fn from_recipe(
        root: &Table,
        stage_names: &[&str],
    ) -> Result<SlurmConfig, SlurmConfigError> {
        let Some(value) = root.get("slurm") else {
            return Ok(SlurmConfig::default());
        };
        let Value::Table(table) = value else {
            return Err(SlurmConfigError::NotATable);
        };
        let mut table = table.clone();
        let invalid = |table: &str, message: String| SlurmConfigError::Invalid {
            table: table.to_owned(),
            message,
        };
        let hwrun = match table.remove("hwrun") {
            None => None,
            Some(Value::String(path)) => Some(Utf8PathBuf::from(path)),
            Some(other) => {
                return Err(invalid(
                    "",
                    format!("`hwrun` must be a path, found {}", other.type_str()),
                ))
            }
        };
        let mut stages = BTreeMap::new();
        if let Some(value) = table.remove("stages") {
            let Value::Table(per_stage) = value else {
                return Err(invalid(
                    ".stages",
                    "must be a table of tables by stage name".to_owned(),
                ));
            };
            for (stage, value) in per_stage {
                if !stage_names.contains(&stage.as_str()) {
                    return Err(SlurmConfigError::StageUnknown {
                        stage,
                        known: stage_names.join(", "),
                    });
                }
                let resources = value.try_into().map_err(|e: toml::de::Error| {
                    invalid(&format!(".stages.{stage}"), e.message().to_owned())
                })?;
                stages.insert(stage, resources);
            }
        }
        let defaults = Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid("", e.message().to_owned()))?;
        Ok(SlurmConfig {
            defaults,
            stages,
            hwrun,
        })
    }

    /// What the jobs of `stage` ask for: its overrides over the defaults.
    pub fn resources(&self, stage: &str) -> Resources {
        let mut merged = self.defaults.clone();
        if let Some(over) = self.stages.get(stage) {
            let over = over.clone();
            merged = Resources {
                partition: over.partition.or(merged.partition),
                account: over.account.or(merged.account),
                qos: over.qos.or(merged.qos),
                time: over.time.or(merged.time),
                mem: over.mem.or(merged.mem),
                cpus_per_task: over.cpus_per_task.or(merged.cpus_per_task),
                gpus: over.gpus.or(merged.gpus),
                extra_args: over.extra_args.or(merged.extra_args),
            };
        }
        merged
    }
}

impl Resources {
    /// The sbatch arguments; `uses_device`: the stage computes on a device.
    pub fn sbatch_args(&self, uses_device: bool) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                args.push(format!("--{name}={value}"));
            }
        };
        flag("partition", &self.partition);
        flag("account", &self.account);
        flag("qos", &self.qos);
        flag("time", &self.time);
        flag("mem", &self.mem);
        if let Some(cpus) = self.cpus_per_task {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        if uses_device && self.gpus == Some(true) {
            args.push("--gres=gpu:1".to_owned());
        }
        args.extend(self.extra_args.iter().flatten().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<SlurmConfig, SlurmConfigError> {
        SlurmConfig::from_recipe(&toml::from_str(text).unwrap(), &["train", "eval"])
    }

    #[test]
    fn stage_tables_override_the_defaults() {
        let config = config(
            "[slurm]\npartition = \"cpu\"\ntime = \"10:00\"\ngpus = true\n[slurm.stages.train]\ntime = \"2:00:00\"\npartition = \"gpu\"\n",
        )
        .unwrap();
        assert_eq!(
            config.resources("train").sbatch_args(true),
            ["--partition=gpu", "--time=2:00:00", "--gres=gpu:1"]
        );
        assert_eq!(
            config.resources("eval").sbatch_args(false),
            ["--partition=cpu", "--time=10:00"]
        );
    }

    #[test]
    fn gpus_only_when_the_cluster_has_them() {
        let config = config("[slurm]\ncpus_per_task = 2\n").unwrap();
        assert_eq!(
            config.resources("train").sbatch_args(true),
            ["--cpus-per-task=2"]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let error = config("[slurm]\npartiton = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("partiton"), "{error}");
        let error = config("[slurm.stages.trian]\ntime = \"1:00\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("trian") && error.contains("train, eval"),
            "{error}"
        );
        assert!(config("").unwrap() == SlurmConfig::default());
    }
}
