//! One place that decides what goes to stdout, stderr and progress bars.
//!
//! Results (plans, summaries, tables) go to stdout; progress and log lines to stderr. Progress
//! bars are drawn only on a terminal and never with `--quiet` or `--json`; log lines printed
//! while bars are visible go through the bars so they do not tear them.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How the user asked to be talked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Progress bars (on a terminal) and human-readable results.
    Human,
    /// Results only, no progress.
    Quiet,
    /// Machine-readable results on stdout, no progress.
    Json,
}

/// The printer shared by the whole run.
#[derive(Clone)]
pub struct Printer {
    mode: OutputMode,
    bars: MultiProgress,
    draw: bool,
}

impl Printer {
    pub fn new(mode: OutputMode) -> Printer {
        let draw = mode == OutputMode::Human && std::io::stderr().is_terminal();
        let target = if draw {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Printer {
            mode,
            bars: MultiProgress::with_draw_target(target),
            draw,
        }
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    /// A progress line for a running stage (hidden when not drawing).
    pub fn stage_bar(&self, label: &str) -> ProgressBar {
        if !self.draw {
            return ProgressBar::hidden();
        }
        let bar = self.bars.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>24.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(shorten(label, 24));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// The overall `[done/total]` line.
    pub fn overall_bar(&self, total: u64) -> ProgressBar {
        if !self.draw {
            return ProgressBar::hidden();
        }
        let bar = self.bars.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>24.bold} {pos}/{len} stages {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix("hwrun");
        bar
    }

    /// A status line on stderr (`running train`, `✓ train 3.2s`), unless quiet or JSON.
    pub fn status(&self, line: &str) {
        if self.mode != OutputMode::Human {
            return;
        }
        if self.draw {
            let _ = self.bars.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// A warning on stderr, shown in every mode but JSON's stdout stays clean.
    pub fn warn(&self, line: &str) {
        self.write_stderr(&format!("warning: {line}\n"));
    }

    /// Writes raw text to stderr without tearing progress bars (used by the log writer).
    pub fn write_stderr(&self, text: &str) {
        let write = || {
            let _ = std::io::stderr().write_all(text.as_bytes());
        };
        if self.draw {
            self.bars.suspend(write);
        } else {
            write();
        }
    }

    /// Result text on stdout.
    pub fn result(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
    }
}

/// Routes `tracing` output through the printer.
#[derive(Clone)]
pub struct LogWriter(pub Printer);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_stderr(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// An error and its causes as `what: why: deeper why`, leaving out a cause whose text the
/// message already contains (many errors embed their source's message in their own).
pub fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        let part = part.trim();
        if part.is_empty() || text.contains(part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(part);
    }
    text
}

/// libtorch's C++ errors end with the C++ location and a frame list (`Exception raised from
/// ... (most recent call first): frame #0 ...`). Unless `verbose`, keep only the message, on one
/// line.
pub fn trim_native_trace(text: &str, verbose: bool) -> String {
    match text.find("Exception raised from") {
        Some(cut) if !verbose => text[..cut]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        _ => text.to_owned(),
    }
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let tail: String = text
            .chars()
            .rev()
            .take(width - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "unexpected end of file");
        let error = anyhow::Error::new(io)
            .context("unexpected end of file")
            .context("unpacking `x.gz`");
        assert_eq!(
            chain_text(&error),
            "unpacking `x.gz`: unexpected end of file"
        );
    }

    #[test]
    fn torch_traces_are_cut_to_one_line() {
        let text = "Internal torch error: Expected lr >= 0\nbut got -1\nException raised from adam at x.cpp:12 (most recent call first):\nframe #0: c10::Error";
        assert_eq!(
            trim_native_trace(text, false),
            "Internal torch error: Expected lr >= 0 but got -1"
        );
        assert_eq!(trim_native_trace(text, true), text);
        assert_eq!(trim_native_trace("two\nlines", false), "two\nlines");
    }
}
