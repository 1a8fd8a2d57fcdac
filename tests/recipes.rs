//! Every recipe shipped in `recipes/` parses, validates and plans. Recipes on the course's data
//! layout are planned against a small fake `hw2_data` written here in the real format.

use crate::common;

use std::path::{Path, PathBuf};

use common::project::{stderr, Project};

fn recipes() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut recipes: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    recipes.sort();
    recipes
}

/// `hw2_data/digits/<domain>/{data/*.png, train.csv, val.csv}` with a few images per domain, and
/// `hw2_data/face/{train,val}/*.png`.
fn fake_course_data(project: &Project) -> PathBuf {
    let root = project.path().join("hw2_data");
    for (domain, side, channels) in [
        ("mnist", 28, 1),
        ("mnistm", 28, 3),
        ("svhn", 32, 3),
        ("usps", 28, 1),
    ] {
        let dir = root.join("digits").join(domain);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        for (csv, range) in [("train.csv", 0..20), ("val.csv", 20..30)] {
            let mut rows = String::from("image_name,label\n");
            for i in range {
                let name = format!("{i:05}.png");
                let pixels = vec![(i * 7 % 256) as u8; side * side * channels];
                let colour = if channels == 3 {
                    image::ExtendedColorType::Rgb8
                } else {
                    image::ExtendedColorType::L8
                };
                image::save_buffer(
                    dir.join("data").join(&name),
                    &pixels,
                    side as u32,
                    side as u32,
                    colour,
                )
                .unwrap();
                rows.push_str(&format!("{name},{}\n", i % 10));
            }
            std::fs::write(dir.join(csv), rows).unwrap();
        }
    }
    for (split, count) in [("train", 6), ("val", 3)] {
        let dir = root.join("face").join(split);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..count {
            let pixels = vec![(i * 40) as u8; 64 * 64 * 3];
            image::save_buffer(
                dir.join(format!("{i:05}.png")),
                &pixels,
                64,
                64,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        }
    }
    // The face problem's files: the planner hashes them, so any bytes do.
    let face = root.join("face");
    for dir in ["noise", "GT"] {
        std::fs::create_dir_all(face.join(dir)).unwrap();
    }
    std::fs::write(face.join("UNet.pt"), b"fake weights").unwrap();
    std::fs::write(face.join("noise").join("00.pt"), b"fake noise").unwrap();
    image::save_buffer(
        face.join("GT").join("00.png"),
        &[0u8; 3 * 4 * 4],
        4,
        4,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    root
}

#[test]
fn every_recipe_plans() {
    let project = Project::new();
    let data_root = fake_course_data(&project);
    let recipes = recipes();
    assert!(
        recipes.len() >= 4,
        "expected the shipped recipes, found {recipes:?}"
    );
    for recipe in recipes {
        let set_root = format!("vars.data_root={}", data_root.display());
        let mut args = vec!["plan", recipe.to_str().unwrap()];
        let text = std::fs::read_to_string(&recipe).unwrap();
        if text.contains("data_root") || text.contains("base/p3.toml") {
            args.extend(["--set", &set_root]);
        }
        let (code, plan) = project.run_json(&args);
        assert_eq!(code, Some(0), "{}: {plan}", recipe.display());
        let stages = plan.as_array().unwrap();
        assert!(stages.len() >= 3, "{}: {plan}", recipe.display());
        assert!(
            stages.iter().all(|s| s["status"] == "run"),
            "{}: nothing is cached yet",
            recipe.display()
        );
        assert!(
            stages.iter().any(|s| s["kind"] == "report"),
            "{} has no report",
            recipe.display()
        );
    }
}

#[test]
fn course_recipes_say_where_the_data_is_missing() {
    let project = Project::new();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/p3_mnistm_svhn.toml");
    let output = project.hwrun(&[
        "plan",
        recipe.to_str().unwrap(),
        "--set",
        "vars.data_root=no/such/dir",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("cannot be read") && text.contains("no/such/dir/digits/"),
        "{text}"
    );
}
