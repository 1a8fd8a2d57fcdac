//! HTTP(S) downloads with `ureq` (rustls, no system OpenSSL): bounded retries with exponential
//! back-off, connect/read timeouts, and resumption with `Range` requests.
//!
//! The target file keeps the bytes received so far across attempts of one run. When a transfer
//! breaks off, the next attempt asks for `Range: bytes=<received>-`; a `206` whose
//! `Content-Range` starts there is appended, while a `200` (a server without range support)
//! truncates the file and starts from zero. Client errors (4xx other than 408/429) are not
//! retried: asking again will not help.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ureq::http::HeaderMap;
use ureq::Agent;

use super::error::DownloadError;
use super::Observer;

/// Longest wait between two attempts, however many have failed.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a back-off wait looks at the cancellation flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// How hard to try.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Attempts after the first one.
    pub retries: u32,
    /// Limit for connecting and for every single read or write.
    pub timeout: Duration,
    /// Wait before the first retry, doubled for each further one.
    pub backoff: Duration,
}

/// Downloads `url` into `dest` (created or truncated) and returns its size in bytes.
pub fn download(
    url: &str,
    dest: &Path,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<u64, DownloadError> {
    let agent = agent(options.timeout);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dest)
        .map_err(|err| DownloadError::write(dest, err))?;
    let attempts = options.retries.saturating_add(1);
    let mut attempt = 1;
    loop {
        let err = match fetch_once(&agent, url, &mut file, dest, options.timeout, observer) {
            Ok(size) => return Ok(size),
            Err(err) => err,
        };
        if !err.is_transient() {
            return Err(err);
        }
        if attempt >= attempts {
            return Err(if attempts > 1 {
                DownloadError::RetriesExhausted {
                    attempts,
                    last: Box::new(err),
                }
            } else {
                err
            });
        }
        let wait = backoff(options.backoff, attempt);
        observer.note(&format!(
            "attempt {attempt}/{attempts} failed: {err}; retrying in {:.1} s",
            wait.as_secs_f64()
        ));
        sleep_unless_cancelled(wait, observer)?;
        attempt += 1;
    }
}

fn agent(timeout: Duration) -> Agent {
    Agent::config_builder()
        // Statuses are handled here so a 404 names the URL and a 206 can be told from a 200.
        .http_status_as_error(false)
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        // Headers are small: a server that has not sent them within the limit is stuck.
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .user_agent(concat!("hwrun/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The wait before retry number `attempt` (1-based): `base`, `2 base`, `4 base`, ... capped.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

fn sleep_unless_cancelled(wait: Duration, observer: &dyn Observer) -> Result<(), DownloadError> {
    let until = Instant::now() + wait;
    loop {
        observer.check_cancelled()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(CANCEL_POLL));
    }
}

/// One request: resumes from the bytes already in `file` and returns the complete size.
fn fetch_once(
    agent: &Agent,
    url: &str,
    file: &mut File,
    dest: &Path,
    timeout: Duration,
    observer: &dyn Observer,
) -> Result<u64, DownloadError> {
    let secs = timeout.as_secs();
    let kept = file
        .metadata()
        .map_err(|err| DownloadError::write(dest, err))?
        .len();
    let mut request = agent.get(url);
    if kept > 0 {
        request = request.header("Range", format!("bytes={kept}-"));
    }
    let response = request
        .call()
        .map_err(|err| classify(url, secs, kept, &err))?;
    let status = response.status().as_u16();
    let start = match resume_point(url, status, kept, response.headers(), observer)? {
        Resume::From(start) => start,
        Resume::Discard(reason) => {
            // The kept bytes cannot be continued: drop them so the retry starts from zero.
            file.set_len(0)
                .map_err(|err| DownloadError::write(dest, err))?;
            return Err(DownloadError::TransferBroken {
                url: url.to_owned(),
                bytes: kept,
                reason,
            });
        }
    };
    if start < kept {
        file.set_len(start)
            .map_err(|err| DownloadError::write(dest, err))?;
    }
    file.seek(SeekFrom::Start(start))
        .map_err(|err| DownloadError::write(dest, err))?;
    let total = header_u64(response.headers(), "content-length").map(|len| start + len);
    observer.phase(&format!("downloading {url}"), total);
    observer.position(start);
    let mut body = response.into_body().into_reader();
    let received = copy_body(url, secs, &mut body, file, dest, start, observer)?;
    match total {
        Some(total) if received < total => Err(DownloadError::TransferBroken {
            url: url.to_owned(),
            bytes: received,
            reason: format!("the server announced {total} bytes"),
        }),
        _ => Ok(received),
    }
}

/// What to do with a response's body.
enum Resume {
    /// Write it into the file from this byte on.
    From(u64),
    /// Throw the kept bytes away (the reason says why) and try again.
    Discard(String),
}

/// Where this response's body starts in the file, or why it cannot be used.
fn resume_point(
    url: &str,
    status: u16,
    kept: u64,
    headers: &HeaderMap,
    observer: &dyn Observer,
) -> Result<Resume, DownloadError> {
    match status {
        200 => {
            if kept > 0 {
                observer.note(&format!("{url} does not support resuming; starting over from byte 0"));
            }
            Ok(Resume::From(0))
        }
        206 => match content_range_start(headers) {
            Some(start) if start == kept => Ok(Resume::From(start)),
            None if kept == 0 => Ok(Resume::From(0)),
            other => Ok(Resume::Discard(format!(
                "asked to resume at byte {kept}, the server sent range start {other:?}; starting over"
            ))),
        },
        416 if kept > 0 => Ok(Resume::Discard(
            "the server refused to resume (HTTP 416); starting over".to_owned(),
        )),
        _ => Err(DownloadError::HttpStatus {
            url: url.to_owned(),
            status,
        }),
    }
}

/// Copies the body into `file` chunk by chunk; returns the file's size afterwards.
fn copy_body(
    url: &str,
    secs: u64,
    body: &mut impl Read,
    file: &mut File,
    dest: &Path,
    start: u64,
    observer: &dyn Observer,
) -> Result<u64, DownloadError> {
    let mut buffer = vec![0u8; super::CHUNK];
    let mut received = start;
    loop {
        observer.check_cancelled()?;
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(classify_io(url, secs, received, &err)),
        };
        file.write_all(&buffer[..n])
            .map_err(|err| DownloadError::write(dest, err))?;
        received += n as u64;
        observer.advance(n as u64);
    }
    file.flush()
        .map_err(|err| DownloadError::write(dest, err))?;
    Ok(received)
}

/// Turns a ureq error into one that says what to do; `bytes` is how much had arrived.
fn classify(url: &str, secs: u64, bytes: u64, err: &ureq::Error) -> DownloadError {
    let url_owned = url.to_owned();
    match err {
        ureq::Error::Timeout(_) => DownloadError::Timeout {
            url: url_owned,
            secs,
        },
        ureq::Error::HostNotFound => DownloadError::Unreachable {
            url: url_owned,
            reason: "host name not found".into(),
        },
        ureq::Error::Io(io_err) => classify_io(url, secs, bytes, io_err),
        ureq::Error::Protocol(_) => DownloadError::TransferBroken {
            url: url_owned,
            bytes,
            reason: err.to_string(),
        },
        _ => DownloadError::Unreachable {
            url: url_owned,
            reason: err.to_string(),
        },
    }
}

fn classify_io(url: &str, secs: u64, bytes: u64, err: &io::Error) -> DownloadError {
    // ureq wraps its own errors (such as its read timeout) into io errors while streaming.
    if let Some(inner) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
    {
        return classify(url, secs, bytes, inner);
    }
    let url = url.to_owned();
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => DownloadError::Timeout { url, secs },
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::AddrNotAvailable => DownloadError::Unreachable {
            url,
            reason: err.to_string(),
        },
        _ => DownloadError::TransferBroken {
            url,
            bytes,
            reason: err.to_string(),
        },
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The first byte of `Content-Range: bytes <start>-<end>/<total>`.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    parse_content_range_start(headers.get("content-range")?.to_str().ok()?)
}

fn parse_content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1), Duration::from_millis(100));
        assert_eq!(backoff(base, 2), Duration::from_millis(200));
        assert_eq!(backoff(base, 4), Duration::from_millis(800));
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }

    #[test]
    fn content_range_start_parses() {
        assert_eq!(parse_content_range_start("bytes 500-999/1000"), Some(500));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
        assert_eq!(parse_content_range_start("bytes */1000"), None);
    }

    #[test]
    fn io_errors_map_to_what_to_do() {
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert!(matches!(
            classify_io("u", 3, 0, &timed_out),
            DownloadError::Timeout { secs: 3, .. }
        ));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            classify_io("u", 3, 0, &refused),
            DownloadError::Unreachable { .. }
        ));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            classify_io("u", 3, 7, &eof),
            DownloadError::TransferBroken { bytes: 7, .. }
        ));
        let wrapped = io::Error::other(ureq::Error::Timeout(ureq::Timeout::PerRead));
        assert!(matches!(
            classify_io("u", 3, 0, &wrapped),
            DownloadError::Timeout { .. }
        ));
    }

    #[test]
    fn unreachable_message_suggests_a_manual_download() {
        let err = classify(
            "https://example.invalid/x",
            30,
            0,
            &ureq::Error::HostNotFound,
        );
        assert!(err
            .to_string()
            .contains("download it by hand and point `source` at the file"));
    }
}
