//! The `download` stage end to end, against the scripted HTTP/1.1 server on 127.0.0.1 of
//! `common::http_server` (full answers, cut connections, 206 resumes, 404s, stalls), and against
//! local archives built here with the same crates hwrun reads them with.

use crate::common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use common::http_server::{header, send, send_cut, send_full, send_range, sha256_hex, Server};
use hwrun::stage::{Registered, StageContext, StageOutcome, StageRunner};
use hwrun::stages::download::DownloadStage;
use sha2::Digest;

/// Deterministic bytes, several read chunks long.
fn payload() -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..200_000)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// A fresh output directory inside a temporary one (kept alive by the returned guard).
fn out_dir() -> (tempfile::TempDir, Utf8PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let out = Utf8PathBuf::from_path_buf(temp.path().join("out")).unwrap();
    fs::create_dir(&out).unwrap();
    (temp, out)
}

/// Runs the real stage with `params` (a TOML stage table without `kind`).
fn run(params: &str, out: &Utf8Path) -> anyhow::Result<StageOutcome> {
    let table: toml::Table = toml::from_str(params).unwrap();
    let mut ctx = StageContext::new("fetch", out.to_owned(), BTreeMap::new(), 0);
    Registered::<DownloadStage>::new().run(&table, &mut ctx)
}

fn error_text(result: anyhow::Result<StageOutcome>) -> String {
    format!("{:#}", result.expect_err("the stage should fail"))
}

#[test]
fn downloads_and_verifies_sha256() {
    let body = payload();
    let served = body.clone();
    let server = Server::start(1, move |_, _, stream| send_full(stream, &served));
    let (_temp, out) = out_dir();
    let params = format!(
        "source = \"{}\"\nsha256 = \"{}\"",
        server.url("data.bin"),
        sha256_hex(&body)
    );
    let outcome = run(&params, &out).unwrap();
    assert_eq!(fs::read(out.join("data.bin")).unwrap(), body);
    assert_eq!(outcome.metrics["bytes"], body.len() as f64);
    assert_eq!(
        outcome.summary,
        vec!["data.bin: 195.31 KiB, sha256 ok".to_owned()]
    );
    assert!(!out.join("data.bin.part").exists());
}

#[test]
fn resumes_with_range_after_the_connection_is_cut() {
    let body = payload();
    let served = body.clone();
    let server = Server::start(2, move |index, head, stream| match index {
        0 => send_cut(stream, &served),
        _ => send_range(stream, head, &served),
    });
    let (_temp, out) = out_dir();
    let md5 = hex::encode(<md5::Md5 as Digest>::digest(&body));
    let params = format!(
        "url = \"{}\"\nmd5 = \"{md5}\"\nbackoff_ms = 10",
        server.url("data.bin")
    );
    let outcome = run(&params, &out).unwrap();
    let heads = server.heads();
    assert_eq!(heads.len(), 2);
    assert_eq!(header(&heads[0], "range"), None);
    assert_eq!(
        header(&heads[1], "range"),
        Some(format!("bytes={}-", body.len() / 2))
    );
    assert_eq!(fs::read(out.join("data.bin")).unwrap(), body);
    assert!(
        outcome.summary[0].ends_with("md5 ok"),
        "{:?}",
        outcome.summary
    );
}

#[test]
fn restarts_from_zero_when_the_server_ignores_range() {
    let body = payload();
    let served = body.clone();
    let server = Server::start(2, move |index, _, stream| match index {
        0 => send_cut(stream, &served),
        _ => send_full(stream, &served),
    });
    let (_temp, out) = out_dir();
    let params = format!(
        "source = \"{}\"\nsha256 = \"{}\"\nbackoff_ms = 10",
        server.url("data.bin"),
        sha256_hex(&body)
    );
    run(&params, &out).unwrap();
    assert!(header(&server.heads()[1], "range").is_some());
    assert_eq!(fs::read(out.join("data.bin")).unwrap(), body);
}

#[test]
fn retries_server_errors_then_succeeds() {
    let body = payload();
    let served = body.clone();
    let server = Server::start(2, move |index, _, stream| match index {
        0 => send(
            stream,
            "503 Service Unavailable",
            &["Content-Length: 0".to_owned()],
            b"",
        ),
        _ => send_full(stream, &served),
    });
    let (_temp, out) = out_dir();
    let params = format!(
        "source = \"{}\"\nsha256 = \"{}\"\nbackoff_ms = 10",
        server.url("data.bin"),
        sha256_hex(&body)
    );
    run(&params, &out).unwrap();
    assert_eq!(server.heads().len(), 2);
}

#[test]
fn checksum_mismatch_shows_expected_and_actual() {
    let body = payload();
    let served = body.clone();
    let server = Server::start(1, move |_, _, stream| send_full(stream, &served));
    let (_temp, out) = out_dir();
    let wrong = "ab".repeat(32);
    let params = format!(
        "source = \"{}\"\nsha256 = \"{wrong}\"",
        server.url("data.bin")
    );
    let message = error_text(run(&params, &out));
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(&sha256_hex(&body)), "{message}");
    assert!(!out.join("data.bin").exists());
}

#[test]
fn not_found_names_status_and_url_without_retrying() {
    let server = Server::start(4, |_, _, stream| {
        send(
            stream,
            "404 Not Found",
            &["Content-Length: 0".to_owned()],
            b"",
        )
    });
    let (_temp, out) = out_dir();
    let url = server.url("missing.bin");
    let params = format!(
        "source = \"{url}\"\nsha256 = \"{}\"\nbackoff_ms = 10",
        "0".repeat(64)
    );
    let message = error_text(run(&params, &out));
    assert!(
        message.contains("HTTP 404") && message.contains(&url),
        "{message}"
    );
    assert_eq!(server.heads().len(), 1, "a 404 is not retried");
}

#[test]
fn stalled_server_times_out_quickly() {
    let server = Server::start(1, |_, _, _| thread::sleep(Duration::from_secs(4)));
    let (_temp, out) = out_dir();
    let params = format!(
        "source = \"{}\"\nsha256 = \"{}\"\ntimeout_secs = 1\nretries = 0",
        server.url("slow.bin"),
        "0".repeat(64)
    );
    let started = Instant::now();
    let message = error_text(run(&params, &out));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(message.contains("sent nothing for 1 s"), "{message}");
}

#[test]
fn unreachable_host_suggests_a_manual_download() {
    // A port that was just free: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_temp, out) = out_dir();
    let params = format!(
        "source = \"http://127.0.0.1:{port}/x.bin\"\nverify = false\nretries = 1\nbackoff_ms = 10"
    );
    let message = error_text(run(&params, &out));
    assert!(
        message.contains("download it by hand and point `source` at the file"),
        "{message}"
    );
    assert!(message.contains("gave up after 2 attempts"), "{message}");
}

#[test]
fn local_file_url_is_copied_and_unverified_download_is_allowed() {
    let (temp, out) = out_dir();
    let path = temp.path().join("local.bin");
    fs::write(&path, b"local bytes").unwrap();
    let params = format!("source = \"file://{}\"\nverify = false", path.display());
    let outcome = run(&params, &out).unwrap();
    assert_eq!(fs::read(out.join("local.bin")).unwrap(), b"local bytes");
    assert_eq!(
        outcome.summary,
        vec!["local.bin: 11 B, not verified".to_owned()]
    );
}

// ---- archives ------------------------------------------------------------------------------

const FILES: [(&str, &[u8]); 2] = [("digits/0.txt", b"zero"), ("digits/sub/1.txt", b"one")];

fn write_tar(writer: impl Write) {
    let mut builder = tar::Builder::new(writer);
    for (name, data) in FILES {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, data).unwrap();
    }
    builder.into_inner().unwrap().flush().unwrap();
}

fn write_zip(path: &std::path::Path, names: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    for (name, data) in names {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// Unpacks `archive` (a local path) with the stage and checks the tree and the summary.
fn assert_unpacks_tree(archive: &std::path::Path) {
    let (_temp, out) = out_dir();
    let params = format!(
        "source = \"{}\"\nverify = false\nunpack = true",
        archive.display()
    );
    let outcome = run(&params, &out).unwrap();
    for (name, data) in FILES {
        assert_eq!(fs::read(out.join(name)).unwrap(), data, "{name}");
    }
    assert_eq!(outcome.metrics["unpacked_files"], 2.0);
    assert!(
        outcome.summary[0].contains("unpacked 2 files"),
        "{:?}",
        outcome.summary
    );
}

#[test]
fn unpacks_tar() {
    let temp = tempfile::tempdir().unwrap();
    let archive = temp.path().join("digits.tar");
    write_tar(File::create(&archive).unwrap());
    assert_unpacks_tree(&archive);
}

#[test]
fn unpacks_tar_gz_and_tgz() {
    let temp = tempfile::tempdir().unwrap();
    for name in ["digits.tar.gz", "digits.tgz"] {
        let archive = temp.path().join(name);
        write_tar(flate2::write::GzEncoder::new(
            File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        ));
        assert_unpacks_tree(&archive);
    }
}

#[test]
fn unpacks_zip() {
    let temp = tempfile::tempdir().unwrap();
    let archive = temp.path().join("digits.zip");
    write_zip(&archive, &FILES);
    assert_unpacks_tree(&archive);
}

#[test]
fn unpacks_gz_and_bz2_single_files() {
    let temp = tempfile::tempdir().unwrap();
    let gz = temp.path().join("labels.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
    encoder.write_all(b"gz content").unwrap();
    encoder.finish().unwrap();
    let bz2 = temp.path().join("usps.bz2");
    let mut encoder =
        bzip2::write::BzEncoder::new(File::create(&bz2).unwrap(), bzip2::Compression::fast());
    encoder.write_all(b"bz2 content").unwrap();
    encoder.finish().unwrap();
    for (archive, name, data) in [
        (&gz, "labels", &b"gz content"[..]),
        (&bz2, "usps", &b"bz2 content"[..]),
    ] {
        let (_temp, out) = out_dir();
        let params = format!(
            "source = \"{}\"\nverify = false\nunpack = true",
            archive.display()
        );
        run(&params, &out).unwrap();
        assert_eq!(fs::read(out.join(name)).unwrap(), data);
    }
}

#[test]
fn unpacks_an_http_download_and_drops_the_archive() {
    let mut archive = Vec::new();
    write_tar(flate2::write::GzEncoder::new(
        &mut archive,
        flate2::Compression::fast(),
    ));
    let served = archive.clone();
    let server = Server::start(1, move |_, _, stream| send_full(stream, &served));
    let (_temp, out) = out_dir();
    let params = format!(
        "source = \"{}\"\nsha256 = \"{}\"\nunpack = true",
        server.url("d.tgz"),
        sha256_hex(&archive)
    );
    run(&params, &out).unwrap();
    let mut names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("digits")]);
    assert_eq!(fs::read(out.join("digits/sub/1.txt")).unwrap(), b"one");
}

#[test]
fn zip_entry_escaping_the_output_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let archive = temp.path().join("evil.zip");
    write_zip(&archive, &[("../evil.txt", b"gotcha")]);
    let (outer, out) = out_dir();
    let params = format!(
        "source = \"{}\"\nverify = false\nunpack = true",
        archive.display()
    );
    let message = error_text(run(&params, &out));
    assert!(
        message.contains("../evil.txt") && message.contains("refusing"),
        "{message}"
    );
    assert!(!outer.path().join("evil.txt").exists());
}
