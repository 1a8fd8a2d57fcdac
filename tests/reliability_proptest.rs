//! Property test of recipe parsing, validation and planning: recipes assembled from valid and
//! broken fragments (bad types, unknown keys and kinds, odd references, sweeps, `--set`s, huge
//! numbers, control characters) never panic; each either plans or returns a recipe error whose
//! location, if it has one, resolves.

use hwrun::cache::file_hash::StatCache;
use hwrun::graph::Plan;
use hwrun::recipe::{self, RecipeSource};
use proptest::prelude::*;

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

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(options)
}

fn stage() -> impl Strategy<Value = String> {
    (
        pick(STAGE_NAMES),
        pick(KINDS),
        proptest::collection::vec(pick(PARAMS), 0..4),
        pick(INPUTS),
    )
        .prop_map(|(name, kind, params, inputs)| {
            format!(
                "[stages.\"{name}\"]\nkind = \"{kind}\"\n{}\n{inputs}\n",
                params.join("\n")
            )
        })
}

fn recipe_text() -> impl Strategy<Value = (String, Vec<String>)> {
    (
        pick(HEADERS),
        proptest::collection::vec(stage(), 0..4),
        pick(TAILS),
        proptest::collection::vec(pick(SETS), 0..2),
        any::<u8>(),
    )
        .prop_map(|(header, stages, tail, sets, noise)| {
            let mut text = format!("{header}{}{tail}", stages.concat());
            // Now and then a stray byte anywhere, to reach the TOML parser's error paths.
            if noise % 7 == 0 && !text.is_empty() {
                let at = (noise as usize * 31) % text.len();
                if text.is_char_boundary(at) {
                    text.insert(
                        at,
                        ['"', '[', '=', '\n', '\u{feff}', '\u{7}'][noise as usize % 6],
                    );
                }
            }
            (text, sets.into_iter().map(str::to_owned).collect())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn recipes_never_panic_the_planner((text, sets) in recipe_text()) {
        match recipe::load(RecipeSource::Text { name: "p.toml", text: &text }, &sets, hwrun::stages::registry()) {
            Ok(recipe) => {
                let _ = Plan::build(recipe, &mut StatCache::default());
            }
            Err(load) => {
                if let Some(span) = load.error.span() {
                    prop_assert!(load.sources.locate(span).is_some(), "{} has a dangling span", load.error);
                }
                let _ = hwrun::error::render_recipe_error(&load.error, &load.sources);
            }
        }
    }
}
