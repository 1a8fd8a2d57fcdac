//! hwrun's PyTorch-file reader against `torch.save`: `tests/oracles/pytorch_file.py` (run once with the
//! venv's python) writes every container shape and dtype in both formats, with the expected
//! tensors beside each file as safetensors; every tensor read here must match by name, order,
//! dtype, shape and bytes. Files that are refused (forbidden globals, an unsupported dtype,
//! truncated, not a torch file) must give an error that says so, and random damage to valid files
//! must give errors, never a panic.

use crate::common;

use std::collections::HashMap;
use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};
use hwrun::pytorch_file::{read_state_dict, read_tensor, read_tensors, PytorchFileError};
use rand::{Rng, SeedableRng};
use tch::Tensor;

const ORACLE: &str = include_str!("oracles/pytorch_file.py");

/// The directory the oracle wrote, generated once per test run.
fn files() -> &'static Utf8Path {
    static DIR: OnceLock<Utf8PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Utf8PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pytorch_file");
        let _ = std::fs::remove_dir_all(&dir);
        let summary = common::run_python(
            &format!("import sys\nsys.argv = ['oracle'] + sys.argv[1:]\n{ORACLE}"),
            &[dir.as_str()],
        );
        eprintln!("oracle: {}", summary.trim());
        dir
    })
}

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(files().join("manifest.json")).unwrap()).unwrap()
}

fn bytes_of(t: &Tensor) -> Vec<u8> {
    let t = t.contiguous();
    let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut bytes, t.numel());
    bytes
}

fn read(api: &str, path: &Utf8Path) -> Result<Vec<(String, Tensor)>, PytorchFileError> {
    match api {
        "tensors" => read_tensors(path),
        "state_dict" => read_state_dict(path),
        "tensor" => read_tensor(path).map(|t| vec![(String::new(), t)]),
        other => panic!("unknown api {other}"),
    }
}

#[test]
fn every_tensor_matches_torch_save_in_both_formats() {
    let manifest = manifest();
    let (mut files_read, mut tensors_compared) = (0, 0);
    for case in manifest["cases"].as_array().unwrap() {
        let path = files().join(case["file"].as_str().unwrap());
        for check in case["checks"].as_array().unwrap() {
            let api = check["api"].as_str().unwrap();
            let got = read(api, &path).unwrap_or_else(|e| panic!("{api}: {e}"));
            let expected: HashMap<String, Tensor> =
                Tensor::read_safetensors(files().join(check["expected"].as_str().unwrap()))
                    .unwrap()
                    .into_iter()
                    .collect();
            let keys: Vec<&str> = check["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect();
            let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, keys, "{path} via {api}: names or their order differ");
            for (i, (name, tensor)) in got.iter().enumerate() {
                let want = &expected[&format!("t{i}")];
                let what = format!("{path} via {api}: tensor `{name}`");
                assert_eq!(tensor.device(), tch::Device::Cpu, "{what}");
                assert_eq!(tensor.kind(), want.kind(), "{what}: dtype");
                assert_eq!(tensor.size(), want.size(), "{what}: shape");
                assert!(bytes_of(tensor) == bytes_of(want), "{what}: values differ");
                tensors_compared += 1;
            }
            files_read += 1;
        }
    }
    eprintln!("{files_read} reads, {tensors_compared} tensors identical to torch.save's");
    assert!(
        files_read >= 25 && tensors_compared >= 200,
        "{files_read} reads, {tensors_compared} tensors"
    );
}

#[test]
fn forbidden_globals_and_unsupported_dtypes_are_refused_by_name() {
    for case in manifest()["errors"].as_array().unwrap() {
        let path = files().join(case["file"].as_str().unwrap());
        let err = read_tensors(&path)
            .err()
            .unwrap_or_else(|| panic!("{path} was read"));
        let message = err.to_string();
        eprintln!("{message}");
        assert!(message.contains(path.as_str()), "{message}");
        for part in case["contains"].as_array().unwrap() {
            assert!(
                message.contains(part.as_str().unwrap()),
                "{path}: `{part}` not in: {message}"
            );
        }
    }
}

#[test]
fn the_wrong_container_for_the_api_is_named() {
    let err = read_tensor(&files().join("checkpoint.zip.pt"))
        .err()
        .unwrap();
    assert!(matches!(err, PytorchFileError::NotATensor { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("a dict of 8 entries (keys `epoch`, `state_dict`"),
        "{err}"
    );
    let err = read_state_dict(&files().join("noise.legacy.pt"))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("holds no dict of tensors: it holds a tensor of shape [1, 3, 256, 256]"),
        "{err}"
    );
}

fn scratch() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

#[test]
fn truncated_files_say_they_are_truncated() {
    let (_guard, dir) = scratch();
    for name in [
        "dtypes.zip.pt",
        "dtypes.legacy.pt",
        "noise.legacy.pt",
        "noise.zip.pt",
    ] {
        let bytes = std::fs::read(files().join(name)).unwrap();
        // Inside the pickles, inside the storages, and just short of the end.
        for cut in [9, 200, bytes.len() / 2, bytes.len() - 1] {
            let path = dir.join(format!("cut-{cut}-{name}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = read_tensors(&path)
                .err()
                .unwrap_or_else(|| panic!("{name} cut at {cut} was read"));
            eprintln!("{err}");
            assert!(
                matches!(err, PytorchFileError::Truncated { .. }),
                "{name} cut at {cut}: {err}"
            );
            assert!(
                err.to_string().contains(path.as_str()) && err.to_string().contains("truncated"),
                "{err}"
            );
        }
    }
}

#[test]
fn files_that_are_not_torch_files_say_what_they_are() {
    let (_guard, dir) = scratch();
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "image.pt",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01",
            "it is a PNG image",
        ),
        (
            "notes.pt",
            b"epoch 3: loss 0.25\n",
            "it is text starting \"epoch 3: loss 0.25\"",
        ),
        ("empty.pt", b"", "it is an empty file"),
        (
            "plain.pickle",
            b"\x80\x02}q\x00.",
            "a Python pickle that does not start with torch's magic number",
        ),
    ];
    for (name, bytes, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = read_tensors(&path).err().unwrap();
        eprintln!("{err}");
        assert!(
            matches!(err, PytorchFileError::NotTorchFile { .. }),
            "{name}: {err}"
        );
        assert!(
            err.to_string().contains(says) && err.to_string().contains("torch.save"),
            "{name}: {err}"
        );
    }
    let err = read_tensors(&dir.join("missing.pt")).err().unwrap();
    assert!(matches!(err, PytorchFileError::Io { .. }), "{err}");
}

/// Random byte flips and cuts of valid files (zip and legacy) give `Ok` or `Err`, never a panic.
#[test]
fn damaged_files_never_panic() {
    let (_guard, dir) = scratch();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut errors, mut reads) = (0, 0);
    for name in [
        "dtypes.zip.pt",
        "dtypes.legacy.pt",
        "views.legacy.pt",
        "checkpoint.zip.pt",
        "checkpoint.legacy.pt",
    ] {
        let original = std::fs::read(files().join(name)).unwrap();
        // Flips concentrate on the pickles and headers: the first 2 KiB, where structure lives.
        let hot = original.len().min(2048);
        for round in 0..150 {
            let mut bytes = original.clone();
            if round % 5 == 4 {
                bytes.truncate(rng.random_range(0..original.len()));
            } else {
                for _ in 0..rng.random_range(1..4) {
                    let at = if rng.random_bool(0.8) {
                        rng.random_range(0..hot)
                    } else {
                        rng.random_range(0..bytes.len())
                    };
                    bytes[at] ^= rng.random_range(1..=255u8);
                }
            }
            let path = dir.join(format!("{round}-{name}"));
            std::fs::write(&path, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(|| read_tensors(&path).map(|t| t.len()));
            let outcome = outcome
                .unwrap_or_else(|_| panic!("{name} round {round} panicked (file kept at {path})"));
            errors += usize::from(outcome.is_err());
            reads += 1;
            std::fs::remove_file(&path).unwrap();
        }
    }
    eprintln!("{reads} damaged files read, {errors} refused with an error");
    assert!(
        errors > reads / 3,
        "only {errors} of {reads} damaged files were refused"
    );
}
