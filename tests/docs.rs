//! The documentation stays true to the binary: the README's table of stage kinds is what
//! `hwrun stages --json` lists, row for row.

use std::path::Path;

use crate::common::project::Project;

const START: &str = "<!-- stage-kinds:start -->";
const END: &str = "<!-- stage-kinds:end -->";

/// The table rows between the README's markers, header and separator left out.
fn readme_stage_rows() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable");
    let start = readme
        .find(START)
        .expect("README.md has the stage-kinds start marker")
        + START.len();
    let end = readme
        .find(END)
        .expect("README.md has the stage-kinds end marker");
    readme[start..end]
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|'))
        .skip(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_lists_every_stage_kind_as_hwrun_stages_does() {
    let listed = Project::new().run_json_ok(&["stages"]);
    let expected: Vec<String> = listed
        .as_array()
        .expect("`hwrun stages --json` prints an array")
        .iter()
        .map(|kind| {
            let about = kind["about"].as_str().unwrap().replace('|', "\\|");
            format!("| `{}` | {about} |", kind["kind"].as_str().unwrap())
        })
        .collect();
    assert!(expected.len() > 10, "hwrun knows its kinds: {listed}");
    assert_eq!(
        readme_stage_rows(),
        expected,
        "README.md's stage-kind table differs from `hwrun stages --json`; regenerate its rows"
    );
}
