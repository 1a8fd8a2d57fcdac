//! The face score's detector on real photographs shipped inside scikit-image (written as PNG by
//! `tests/oracles/face_score_photos.py`): a portrait counts as one face, at full size and shrunk to the
//! 64x64 of generated faces; a cup of coffee and a rocket launch count as none; a file that is
//! not an image is dropped from the total, also through the `face_score` stage.

use crate::common;

use camino::Utf8PathBuf;
use hwrun::metrics::face_score::{face_score, FaceDetector};
use hwrun::stage::{InputArtifact, Stage, StageContext};
use hwrun::stages::face_score::{FaceScoreParams, FaceScoreStage};

const PHOTOS: &str = include_str!("oracles/face_score_photos.py");

#[test]
fn one_face_in_a_portrait_and_none_in_a_still_life() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    common::run_python(
        &format!("import sys\nsys.argv = ['photos'] + sys.argv[1:]\n{PHOTOS}"),
        &[dir.as_str()],
    );
    let mut detector = FaceDetector::new().unwrap();
    let mut count = |name: &str| detector.count(&image::open(dir.join(name)).unwrap());
    assert_eq!(
        count("astronaut.png"),
        1,
        "the astronaut portrait has one face"
    );
    assert_eq!(count("astronaut_64.png"), 1, "and so has its 64x64 crop");
    assert_eq!(count("coffee.png"), 0, "a cup of coffee has none");
    assert_eq!(count("rocket.png"), 0, "a rocket launch has none");

    std::fs::write(dir.join("broken.png"), b"not an image").unwrap();
    let files: Vec<Utf8PathBuf> = ["astronaut_64.png", "coffee.png", "broken.png"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let score = face_score(&files, &dir, || {}).unwrap();
    assert_eq!(
        (score.one_face, score.readable, score.unreadable.len()),
        (1, 2, 1)
    );
    assert_eq!(score.score, 0.5);

    let input = InputArtifact {
        dir: dir.clone(),
        stage: "photos".into(),
        kind: "test".into(),
        params: serde_json::Value::Null,
        outcome: Default::default(),
    };
    let out = dir.join("out");
    let mut ctx = StageContext::new(
        "faces",
        out,
        [("images".to_owned(), input)].into_iter().collect(),
        0,
    );
    let outcome = FaceScoreStage::run(FaceScoreParams::default(), &mut ctx).unwrap();
    // astronaut, astronaut_64 (one face each), coffee, rocket (none); broken.png is dropped.
    assert_eq!(outcome.metrics["face_score"], 0.5, "{outcome:?}");
    assert_eq!(
        (outcome.metrics["images"], outcome.metrics["unreadable"]),
        (4.0, 1.0)
    );
}
