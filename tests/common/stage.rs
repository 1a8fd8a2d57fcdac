//! Running a stage kind in process, without the runner: inputs as artifacts of a temp folder.

use camino::Utf8PathBuf;
use hwrun::stage::InputArtifact;

/// A stage input read from `dir`, as if a `synthetic` stage named `data` had written it.
pub fn artifact(dir: Utf8PathBuf) -> InputArtifact {
    InputArtifact {
        dir,
        stage: "data".into(),
        kind: "synthetic".into(),
        params: serde_json::Value::Null,
        outcome: Default::default(),
    }
}

/// A fresh temp folder (removed when the guard drops) and its UTF-8 path.
pub fn temp_root() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, root)
}
