//! `command`: runs a program of the user's, e.g. their own Python script.
//!
//! The argument list is run directly (no shell) unless `shell` is given. Placeholders in
//! arguments, the shell line and environment values: `{out}` is the output directory,
//! `{NAME}` the directory of input `NAME`, `{seed}` the recipe seed; `{{` and `}}` are literal
//! braces. stdout and stderr go to the stage log. If the program writes `{out}/metrics.json`
//! (a flat object of numbers), those become the stage's metrics. Files named in `files` (the
//! script itself, say) are hashed into the cache key, so editing the script reruns the stage.
//!
//! ```toml
//! [stages.prep]
//! kind = "command"
//! inputs = { raw = "download" }
//! args = ["python3", "scripts/prep.py", "--raw", "{raw}", "--out", "{out}"]
//! files = ["scripts/prep.py"]
//! env = { OMP_NUM_THREADS = "2" }
//!
//! [stages.count]
//! kind = "command"
//! shell = "ls {raw} | wc -l > {out}/count.txt"
//! inputs = { raw = "download" }
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::stage::{Inputs, LogSink, StageContext};
use crate::stage::{Metrics, ParamError, Stage, StageOutcome, StageShape};

pub struct CommandStage;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// Program and arguments, run without a shell.
    #[serde(default)]
    pub args: Vec<String>,
    /// A line for `sh -c`, instead of `args`.
    #[serde(default)]
    pub shell: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files or directories the command reads besides its inputs; their content is part of the key.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub files: Vec<Utf8PathBuf>,
    /// Named outputs: sub-directories of `{out}` the command creates, referenced as `stage.name`.
    #[serde(default)]
    pub outputs: Vec<String>,
}

impl Stage for CommandStage {
    type Params = CommandParams;
    const KIND: &'static str = "command";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Run your own program or script with its inputs' and output's paths";
    const INPUTS: Inputs =
        Inputs::Any("any names; `{name}` in `args` or `shell` expands to that input's directory");
    const EXAMPLE: &'static str = r#"name = "example"

[stages.hello]
kind = "command"
shell = "echo hello > {out}/hello.txt"

[stages.count]
kind = "command"
inputs = { words = "hello" }
args = ["sh", "-c", "wc -c < {words}/hello.txt > {out}/count.txt"]
env = { LC_ALL = "C" }
"#;

    fn validate(params: &CommandParams) -> Result<(), ParamError> {
        if params.args.is_empty() && params.shell.is_none() {
            return Err(ParamError {
                path: Vec::new(),
                message:
                    "give the program to run as `args = [\"program\", ...]` or `shell = \"...\"`"
                        .to_owned(),
            });
        }
        for (i, output) in params.outputs.iter().enumerate() {
            // An output is a directory the command creates under `{out}`, never anywhere else.
            let inside = !output.is_empty()
                && Utf8Path::new(output)
                    .components()
                    .all(|c| matches!(c, Utf8Component::Normal(_)));
            ParamError::check(
                inside,
                &format!("outputs.{i}"),
                "a relative path inside the output directory, without `..`",
            )?;
        }
        Ok(())
    }

    fn shape(params: &CommandParams) -> StageShape {
        StageShape {
            outputs: params.outputs.clone(),
            external_paths: params.files.clone(),
            ..StageShape::default()
        }
    }

    fn run(params: CommandParams, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let mut values: BTreeMap<String, String> = ctx
            .inputs()
            .iter()
            .map(|(name, input)| (name.clone(), input.dir.to_string()))
            .collect();
        values.insert("out".to_owned(), ctx.out_dir().to_string());
        values.insert("seed".to_owned(), ctx.seed().to_string());
        let mut command = match (&params.shell, params.args.split_first()) {
            (Some(line), _) => {
                let mut command = Command::new("sh");
                command.arg("-c").arg(substitute(line, &values)?);
                command
            }
            (None, Some((program, args))) => {
                let mut command = Command::new(substitute(program, &values)?);
                for arg in args {
                    command.arg(substitute(arg, &values)?);
                }
                command
            }
            (None, None) => {
                bail!("give the program to run as `args = [\"program\", ...]` or `shell = \"...\"`")
            }
        };
        for (key, value) in &params.env {
            command.env(key, substitute(value, &values)?);
        }
        for output in &params.outputs {
            std::fs::create_dir_all(ctx.out_dir().join(output))?;
        }
        let shown = params
            .shell
            .clone()
            .unwrap_or_else(|| params.args.join(" "));
        ctx.log(format!("$ {shown}"));
        crate::process::dies_with_parent(&mut command);
        crate::process::in_own_group(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("cannot start `{shown}`: is the program installed and on PATH?")
            })?;
        let stdout = forward(child.stdout.take(), ctx.log_sink(), false);
        let stderr = forward(child.stderr.take(), ctx.log_sink(), true);
        let status = wait(&mut child, ctx)?;
        let _ = stdout.join();
        let stderr_tail = stderr.join().unwrap_or_default();
        if !status.success() {
            let code = status
                .code()
                .map_or("a signal".to_owned(), |c| format!("exit code {c}"));
            bail!("`{shown}` failed with {code}{}", tail_text(&stderr_tail));
        }
        Ok(StageOutcome {
            metrics: read_metrics(ctx)?,
            ..StageOutcome::default()
        })
    }
}

/// Waits for the child, killing it and everything it started if the run is cancelled.
fn wait(child: &mut Child, ctx: &StageContext) -> anyhow::Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if ctx.check_cancelled().is_err() {
            crate::process::kill_group(child);
            ctx.check_cancelled()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies a child's output into the stage log line by line; returns the last lines of stderr.
fn forward(
    stream: Option<impl Read + Send + 'static>,
    sink: LogSink,
    keep_tail: bool,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let Some(stream) = stream else { return tail };
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.line(&line);
            if keep_tail {
                tail.push(line);
                if tail.len() > 10 {
                    tail.remove(0);
                }
            }
        }
        tail
    })
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last lines of its stderr:\n{}", lines.join("\n"))
    }
}

/// `{out}/metrics.json`, if the command wrote one.
fn read_metrics(ctx: &StageContext) -> anyhow::Result<Metrics> {
    let path = ctx.out_dir().join("metrics.json");
    if !path.exists() {
        return Ok(Metrics::new());
    }
    let text = std::fs::read_to_string(&path)?;
    serde_json::from_str(&text)
        .with_context(|| format!("`{path}` must be a flat JSON object of numbers"))
}

/// Replaces `{name}` placeholders; `{{`/`}}` are literal braces.
fn substitute(text: &str, values: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                match values.get(&name) {
                    Some(value) => out.push_str(value),
                    None => bail!(
                        "unknown placeholder `{{{name}}}` in `{text}`; available: {}",
                        values
                            .keys()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{Registered, StageRunner};
    use camino::Utf8Path;

    fn run(params: &str) -> (tempfile::TempDir, anyhow::Result<StageOutcome>) {
        let tmp = tempfile::tempdir().unwrap();
        let out = Utf8Path::from_path(tmp.path()).unwrap().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut ctx = StageContext::new("cmd", out, BTreeMap::new(), 3);
        let table: toml::Table = toml::from_str(params).unwrap();
        let result = Registered::<CommandStage>::new().run(&table, &mut ctx);
        (tmp, result)
    }

    #[test]
    fn substitutes_placeholders_and_escapes() {
        let values = BTreeMap::from([("out".to_owned(), "/o".to_owned())]);
        assert_eq!(substitute("{out}/x {{y}}", &values).unwrap(), "/o/x {y}");
        assert!(substitute("{nope}", &values)
            .unwrap_err()
            .to_string()
            .contains("{out}"));
    }

    #[test]
    fn reads_metrics_written_by_the_command() {
        let (_tmp, result) = run(r#"shell = "echo '{{\"acc\": 0.5}}' > {out}/metrics.json""#);
        assert_eq!(result.unwrap().metrics["acc"], 0.5);
    }

    #[test]
    fn non_zero_exit_fails_with_stderr() {
        let (_tmp, result) = run(r#"shell = "echo boom >&2; exit 3""#);
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("exit code 3") && message.contains("boom"),
            "{message}"
        );
    }

    #[test]
    fn missing_program_says_so() {
        let (_tmp, result) = run(r#"args = ["hwrun-no-such-program"]"#);
        assert!(result.unwrap_err().to_string().contains("cannot start"));
    }

    #[test]
    fn a_command_needs_a_program_and_outputs_stay_inside() {
        let path = |text: &str| {
            crate::testing::params::<CommandStage>(text)
                .unwrap_err()
                .path
        };
        assert_eq!(path(""), Vec::<String>::new());
        assert_eq!(
            path("shell = \"true\"\noutputs = [\"a\", \"../b\"]"),
            ["outputs", "1"]
        );
        assert_eq!(
            path("args = [\"true\"]\noutputs = [\"/tmp/x\"]"),
            ["outputs", "0"]
        );
        assert!(
            crate::testing::params::<CommandStage>("args = [\"true\"]\noutputs = [\"a/b\"]")
                .is_ok()
        );
    }
}
