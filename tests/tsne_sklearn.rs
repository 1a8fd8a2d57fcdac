//! Our t-SNE and trustworthiness against scikit-learn's on the same data: 600 points in 50-d
//! drawn around 6 Gaussian centres (seeded). scikit-learn runs `TSNE` with the settings ours
//! defaults to (Barnes-Hut, theta 0.5, perplexity 30, PCA init, 1000 iterations, auto learning
//! rate); both embeddings are scored with `sklearn.manifold.trustworthiness(k=10)`, and our
//! trustworthiness must reproduce scikit-learn's value on both embeddings.

use crate::common;

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::Path;

use hwrun::metrics::{trustworthiness, tsne, TsneConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 600;
const DIM: usize = 50;
const CLUSTERS: usize = 6;
const K: usize = 10;

const SKLEARN: &str = r#"
import json, os, sys
# One OpenMP thread: on a busy 2-core machine oversubscription makes TSNE several times slower.
os.environ["OMP_NUM_THREADS"] = "1"
import numpy as np
from sklearn.manifold import TSNE, trustworthiness
x_path, ours_path, theirs_path = sys.argv[1:4]
x = np.loadtxt(x_path, delimiter=",", dtype=np.float32)
ours = np.loadtxt(ours_path, delimiter=",", dtype=np.float32)
theirs = TSNE(n_components=2, perplexity=30.0, max_iter=1000, angle=0.5, init="pca",
              method="barnes_hut", random_state=0).fit_transform(x)
np.savetxt(theirs_path, theirs, delimiter=",", fmt="%.9g")
theirs = np.loadtxt(theirs_path, delimiter=",", dtype=np.float32)
print(json.dumps({"ours": trustworthiness(x, ours, n_neighbors=10),
                  "theirs": trustworthiness(x, theirs, n_neighbors=10)}))
"#;

/// Standard normal samples (Box-Muller) from a seeded stream.
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Points with unit noise around centres drawn with std 3 per coordinate.
fn clustered_points() -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let centres: Vec<f32> = (0..CLUSTERS * DIM)
        .map(|_| 3.0 * normal(&mut rng))
        .collect();
    (0..N)
        .flat_map(|i| {
            let centre = &centres[(i % CLUSTERS) * DIM..(i % CLUSTERS + 1) * DIM];
            centre
                .iter()
                .map(|c| c + normal(&mut rng))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn write_csv(path: &Path, values: &[f32], columns: usize) {
    let mut text = String::new();
    for row in values.chunks_exact(columns) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
        writeln!(text, "{}", cells.join(",")).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn read_csv(path: &Path) -> Vec<f32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .flat_map(|line| {
            line.split(',')
                .map(|cell| cell.parse::<f32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn tsne_trustworthiness_matches_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let (x_path, ours_path, theirs_path) = (
        dir.path().join("x.csv"),
        dir.path().join("ours.csv"),
        dir.path().join("theirs.csv"),
    );
    let x = clustered_points();
    write_csv(&x_path, &x, DIM);

    let start = std::time::Instant::now();
    let ours = tsne(&x, DIM, &TsneConfig::default(), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    eprintln!("our t-SNE of {N} points: {:.2?}", start.elapsed());
    write_csv(&ours_path, &ours.coords, 2);

    let args = [
        x_path.to_str().unwrap(),
        ours_path.to_str().unwrap(),
        theirs_path.to_str().unwrap(),
    ];
    let scores: serde_json::Value =
        serde_json::from_str(&common::run_python(SKLEARN, &args)).unwrap();
    let (sk_ours, sk_theirs) = (
        scores["ours"].as_f64().unwrap(),
        scores["theirs"].as_f64().unwrap(),
    );
    eprintln!("trustworthiness (k={K}): ours {sk_ours:.4}, scikit-learn {sk_theirs:.4}");
    assert!(
        (sk_ours - sk_theirs).abs() < 0.02,
        "ours {sk_ours} vs scikit-learn {sk_theirs}"
    );

    let theirs = read_csv(&theirs_path);
    let read_back = read_csv(&ours_path);
    for (embedding, expected) in [(&read_back, sk_ours), (&theirs, sk_theirs)] {
        let value = trustworthiness(&x, DIM, embedding, 2, K).unwrap();
        assert!(
            (value - expected).abs() < 1e-6,
            "our trustworthiness {value} vs scikit-learn {expected}"
        );
    }
}

/// Wall time of 1000 iterations on 2000 and 5000 clustered 64-d points:
/// `cargo test --release --test tsne_sklearn -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark, not a check"]
fn tsne_timing() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let dim = 64;
    let centres: Vec<f32> = (0..10 * dim).map(|_| 3.0 * normal(&mut rng)).collect();
    for n in [2000, 5000] {
        let x: Vec<f32> = (0..n * dim)
            .map(|v| centres[(v / dim % 10) * dim + v % dim] + normal(&mut rng))
            .collect();
        let start = std::time::Instant::now();
        let embedding = tsne(&x, dim, &TsneConfig::default(), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        eprintln!(
            "t-SNE of {n} x {dim}: {:.2?}, KL {:.3}",
            start.elapsed(),
            embedding.kl_divergence
        );
    }
}
