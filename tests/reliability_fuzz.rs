//! Seeded fuzzing of recipe parsing, validation and planning: recipes assembled from valid and
//! broken fragments (bad types, unknown keys and kinds, odd references, sweeps, `--set`s, huge
//! numbers, control characters) never panic; each either plans or returns a recipe error whose
//! location, if it has one, resolves.

use hwrun::cache::file_hash::StatCache;
use hwrun::graph::Plan;
use hwrun::recipe::{self, RecipeSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HEADERS: &[&str] = &[
    "name = \"p\"\n",
    "name = \"\"\n",
    "name = 3\n",
    "",
    "name = \"p\"\nseed = -1\n",
    "name = \"p\"\nseed = 9223372036854775807\n",
];

const STAGE_NAMES: &[&str] = &["a", "b", "src", "", "a/b", "..", "x y", "ü"];

const KINDS: &[&str] = &[
    "command",
    "report",
    "download",
    "synthetic",
    "dataset",
    "train_classifier",
    "evaluate",
    "comand",
    "",
];

const PARAMS: &[&str] = &[
    "shell = \"true\"",
    "args = [\"true\"]",
    "outputs = [\"train\", \"val\"]",
    "outputs = [\"../x\"]",
    "env = { A = \"1\" }",
    "env = 3",
    "source = \"https://x.invalid/y.bin\"",
    "source = \"/dev/zero\"",
    "md5 = \"d53e105ee54ea40749a09fcbcd1e9432\"",
    "filename = \"../../x\"",
    "unpack = true",
    "domain = \"mnistm\"",
    "n_train = 0",
    "n_train = 9223372036854775807",
    "epochs = 0",
    "lr = nan",
    "lr = -1.0",
    "batch_size = 0",
    "format = \"course\"",
    "root = \"/nonexistent\"",
    "title = \"\\u0000\"",
    "tables = [{ title = \"t\", metric = \"m\", columns = [], rows = [] }]",
    "unknown_key = 1",
];

const INPUTS: &[&str] = &[
    "inputs = { d = \"a\" }",
    "inputs = { d = \"b.train\" }",
    "inputs = { d = \"src.trian\" }",
    "inputs = { d = \"src.../../etc\" }",
    "inputs = { d = \"a.\" }",
    "inputs = { d = 1 }",
    "inputs = { train = \"a.train\", val = \"a.val\" }",
    "inputs = { model = \"b\", data = \"a.val\" }",
    "inputs = 3",
    "",
];

const TAILS: &[&str] = &[
    "",
    "[sweep]\n\"a.env.A\" = [\"1\", \"2\"]\n",
    "[sweep]\nmode = \"zip\"\n\"a.env.A\" = [\"1\"]\n\"b.env.B\" = [\"1\", \"2\"]\n",
    "[sweep]\n\"a.x\" = []\n",
    "[sweep]\n\"nope.x\" = [1]\n",
    "[vars]\nroot = \"r\"\n",
    "[defaults.command]\nshell = \"true\"\n",
    "extends = \"/nonexistent/base.toml\"\n",
    "[stages]\n",
    "= broken toml [[\n",
];

const SETS: &[&str] = &[
    "a.shell=false",
    "vars.root=x",
    "vars.nope=1",
    "a=1",
    "=",
    "b.env.A=\"x\"",
    "sweep.a.env.A=[\"1\"]",
    "seed=-3",
];

/// One random recipe and its `--set`s, drawn from the fragments above.
fn recipe_text(rng: &mut ChaCha8Rng) -> (String, Vec<String>) {
    let pick = |rng: &mut ChaCha8Rng, options: &[&'static str]| {
        options[rng.random_range(0..options.len())]
    };
    let stages: String = (0..rng.random_range(0..4))
        .map(|_| {
            let (name, kind) = (pick(rng, STAGE_NAMES), pick(rng, KINDS));
            let params: Vec<&str> = (0..rng.random_range(0..4))
                .map(|_| pick(rng, PARAMS))
                .collect();
            let inputs = pick(rng, INPUTS);
            format!(
                "[stages.\"{name}\"]\nkind = \"{kind}\"\n{}\n{inputs}\n",
                params.join("\n")
            )
        })
        .collect();
    let mut text = format!("{}{stages}{}", pick(rng, HEADERS), pick(rng, TAILS));
    let sets = (0..rng.random_range(0..2))
        .map(|_| pick(rng, SETS).to_owned())
        .collect();
    // Now and then a stray byte anywhere, to reach the TOML parser's error paths.
    if rng.random_ratio(1, 7) && !text.is_empty() {
        let at = rng.random_range(0..text.len());
        if text.is_char_boundary(at) {
            text.insert(
                at,
                ['"', '[', '=', '\n', '\u{feff}', '\u{7}'][rng.random_range(0..6)],
            );
        }
    }
    (text, sets)
}

/// Plans the recipe, or renders its error; a recipe error must point at a place that exists.
fn plan_or_render(text: &str, sets: &[String]) -> Result<(), String> {
    match recipe::load(
        RecipeSource::Text {
            name: "p.toml",
            text,
        },
        sets,
        hwrun::stages::registry(),
    ) {
        Ok(recipe) => {
            let _ = Plan::build(recipe, &mut StatCache::default());
        }
        Err(load) => {
            if let Some(span) = load.error.span() {
                if load.sources.locate(span).is_none() {
                    return Err(format!("{} has a dangling span", load.error));
                }
            }
            let _ = hwrun::error::render_recipe_error(&load.error, &load.sources);
        }
    }
    Ok(())
}

/// A seeded generator rather than a property-testing crate: proptest's dev-dependency features
/// would change the build of crates `hwrun` itself uses, and `make test` and `make run` share one.
#[test]
fn recipes_never_panic_the_planner() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x0068_7772_756e);
    for case in 0..400 {
        let (text, sets) = recipe_text(&mut rng);
        let outcome = std::panic::catch_unwind(|| plan_or_render(&text, &sets));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => panic!("case {case}: {problem}; --set {sets:?}, recipe:\n{text}"),
            Err(_) => panic!("case {case}: the planner panicked; --set {sets:?}, recipe:\n{text}"),
        }
    }
}
