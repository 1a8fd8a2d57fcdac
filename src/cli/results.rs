//! `results/<recipe>/<stage>`: readable links to the entries of the last run, so a person opens
//! `results/quickstart/report/index.html` instead of `cache/entries/<64 hex>/out/index.html`.
//!
//! Each link is replaced atomically (a temporary link renamed over the old one), so a reader
//! never sees it missing; sweep variants are linked under their labels (`train[train.lr=0.01]`).

use std::fs;

use camino::{Utf8Path, Utf8PathBuf};

use super::args::GlobalArgs;
use crate::cache::store::sanitize;
use crate::cache::{Cache, CacheKey};
use crate::scheduler::{RunSummary, StageResult};

/// `--results-dir`, or `results` beside the cache directory (`./results` for `./cache`).
pub fn results_dir(global: &GlobalArgs) -> Utf8PathBuf {
    global.results_dir.clone().unwrap_or_else(|| {
        global
            .cache_dir
            .parent()
            .unwrap_or(Utf8Path::new(""))
            .join("results")
    })
}

/// Points `dir/<recipe>/<stage>` at each finished stage's outputs and records the link in the
/// summary. Returns the first failure (the run itself is unaffected).
pub fn link_results(
    dir: &Utf8Path,
    cache: &Cache,
    summary: &mut RunSummary,
) -> std::io::Result<()> {
    let recipe_dir = dir.join(sanitize(&summary.recipe));
    let mut first_error = None;
    for stage in &mut summary.stages {
        if !matches!(stage.result, StageResult::Cached | StageResult::Ran) {
            continue;
        }
        let Some(key) = CacheKey::from_hex(&stage.key) else {
            continue;
        };
        let link = recipe_dir.join(sanitize(&stage.name));
        match replace_link(&cache.output_dir(&key), &link) {
            Ok(()) => stage.results = Some(link),
            Err(error) => {
                first_error.get_or_insert(std::io::Error::new(
                    error.kind(),
                    format!("`{link}`: {error}"),
                ));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn replace_link(target: &Utf8Path, link: &Utf8Path) -> std::io::Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::read_link(link).is_ok_and(|current| current == target.as_std_path()) {
        return Ok(());
    }
    let name = link.file_name().unwrap_or("link");
    let tmp = link.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_replaced_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::create_dir_all(dir.join("b")).unwrap();
        let link = dir.join("results/r/stage");
        replace_link(&dir.join("a"), &link).unwrap();
        replace_link(&dir.join("b"), &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), dir.join("b").as_std_path());
        assert_eq!(
            fs::read_dir(dir.join("results/r")).unwrap().count(),
            1,
            "no temporary link is left"
        );
    }
}
