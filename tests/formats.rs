//! Readers against files written by the reference tools: SVHN-style `.mat` files from
//! `scipy.io.savemat` (compressed and not), checked pixel by pixel and label by label.

use crate::common;

use camino::{Utf8Path, Utf8PathBuf};
use hwrun::data::formats::{load_svhn_mat, mat5, ReadOptions};

/// Writes `X` u8 `[h, w, 3, n]` (seeded random) and `y` (`[n, 1]`, labels 1..=10 cycling) with
/// scipy, plus the expected `[N, C, H, W]` bytes and digits that torchvision's SVHN would give.
const WRITE_SVHN: &str = r#"
import sys
import numpy as np
import scipy.io
out, h, w, n, compress, ydtype, oned = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1", sys.argv[6], sys.argv[7]
rng = np.random.RandomState(0)
X = rng.randint(0, 256, size=(h, w, 3, n)).astype(np.uint8)
y = (np.arange(n) % 10 + 1).astype(ydtype)
y = y if oned == "flat" else y.reshape(n, 1)
scipy.io.savemat(out + "/data.mat", {"X": X, "y": y}, do_compression=compress, oned_as="column")
np.transpose(X, (3, 2, 0, 1)).tofile(out + "/expected.bin")
digits = y.reshape(-1).astype(np.int64) % 10
print(" ".join(str(d) for d in digits))
"#;

fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    (dir, path)
}

fn check_svhn(h: usize, w: usize, n: usize, compress: bool, ydtype: &str, oned: &str) {
    let (_dir, dir) = tmp();
    let args = [
        dir.as_str(),
        &h.to_string(),
        &w.to_string(),
        &n.to_string(),
        if compress { "1" } else { "0" },
        ydtype,
        oned,
    ];
    let digits: Vec<i64> = common::run_python(WRITE_SVHN, &args)
        .split_whitespace()
        .map(|d| d.parse().unwrap())
        .collect();
    let data = load_svhn_mat(&dir.join("data.mat"), "svhn", &ReadOptions::default()).unwrap();
    let context = format!("{h}x{w}x{n} compress={compress} y={ydtype}/{oned}");
    assert_eq!(data.shape, [n, 3, h, w], "{context}");
    assert_eq!(data.labels, digits, "{context}");
    assert!(
        data.images == std::fs::read(dir.join("expected.bin")).unwrap(),
        "pixels differ: {context}"
    );
}

#[test]
fn svhn_mat_from_scipy_compressed_round_trips() {
    check_svhn(32, 32, 25, true, "float64", "column");
    // Height != width catches a transposed plane; uint8 labels are stored as miUINT8.
    check_svhn(6, 5, 11, true, "uint8", "column");
}

#[test]
fn svhn_mat_from_scipy_uncompressed_round_trips() {
    check_svhn(32, 32, 12, false, "float64", "column");
    check_svhn(7, 3, 10, false, "uint8", "flat");
}

#[test]
fn mat5_reads_every_numeric_type_scipy_writes() {
    let (_dir, dir) = tmp();
    let script = r#"
import sys
import numpy as np
import scipy.io
values = np.array([[-3, 0, 7], [100, -128, 5]])
arrays = {t: values.astype(t) for t in ["int8", "int16", "int32", "int64", "float32", "float64"]}
arrays.update({t: np.abs(values).astype(t) for t in ["uint8", "uint16", "uint32", "uint64"]})
arrays["text"] = "ignored"
for compress in (False, True):
    scipy.io.savemat(sys.argv[1] + f"/types_{int(compress)}.mat", arrays, do_compression=compress)
"#;
    common::run_python(script, &[dir.as_str()]);
    let column_major = [-3.0, 100.0, 0.0, -128.0, 7.0, 5.0];
    for compress in [0, 1] {
        let bytes = std::fs::read(dir.join(format!("types_{compress}.mat"))).unwrap();
        let arrays = mat5::parse(&bytes).unwrap();
        assert_eq!(arrays.len(), 10, "char arrays are skipped");
        for array in &arrays {
            let expected: Vec<f64> = column_major
                .iter()
                .map(|v: &f64| {
                    if array.name.starts_with('u') {
                        v.abs()
                    } else {
                        *v
                    }
                })
                .collect();
            assert_eq!(array.dims, vec![2, 3], "{}", array.name);
            assert_eq!(
                array.to_f64(),
                expected,
                "{} compress={compress}",
                array.name
            );
        }
    }
}

#[test]
fn svhn_mat_without_x_names_what_it_found() {
    let (_dir, dir) = tmp();
    let script = "import sys, numpy as np, scipy.io\nscipy.io.savemat(sys.argv[1] + '/bad.mat', {'images': np.zeros((2, 2), np.uint8)})";
    common::run_python(script, &[dir.as_str()]);
    let err = load_svhn_mat(&dir.join("bad.mat"), "svhn", &ReadOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("variable `X` is missing; the file has [\"images\"]"),
        "{err}"
    );
}
