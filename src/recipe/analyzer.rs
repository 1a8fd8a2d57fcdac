//! Turns a [`RecipeDocument`] into a checked [`Recipe`]: known keys, known stage kinds, valid
//! parameters, resolvable inputs, no cycles, stages in dependency order.

use std::collections::BTreeMap;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use toml::{Table, Value};

use super::document::RecipeDocument;
use super::error::{suggest, RecipeError};
use super::span_index::path_of;
use super::sweep::Sweep;
use crate::stage::{CheckedParams, Inputs, StageKind};

const ROOT_KEYS: &[&str] = &[
    "name",
    "seed",
    "description",
    "extends",
    "defaults",
    "vars",
    "stages",
    "sweep",
    "run",
    "slurm",
];
/// Keys of a stage table that are not parameters.
const STAGE_KEYS: &[&str] = &["kind", "inputs"];

/// A validated recipe.
pub struct Recipe {
    pub name: String,
    pub seed: u64,
    pub description: Option<String>,
    /// Stages in an order where every stage comes after its inputs.
    pub stages: Vec<StageDecl>,
    pub sweep: Sweep,
    pub document: RecipeDocument,
}

/// One stage as declared, checked against its kind.
pub struct StageDecl {
    pub name: String,
    pub kind: &'static dyn StageKind,
    /// The parameters as written (everything but `kind` and `inputs`).
    pub params: Table,
    pub inputs: BTreeMap<String, InputRef>,
    pub checked: CheckedParams,
}

/// A reference to another stage's output: `stage` or `stage.output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    /// Index into [`Recipe::stages`].
    pub stage: usize,
    pub output: Option<String>,
}

impl Recipe {
    /// Checks `document` against `kinds`, the stage kinds a recipe may name (the registry, which
    /// lives above recipes and is handed down by whoever loads one).
    pub fn analyse(
        document: &RecipeDocument,
        kinds: &[&'static dyn StageKind],
    ) -> Result<Recipe, RecipeError> {
        let root = &document.root;
        check_known_keys(document, root, &[], ROOT_KEYS, "the recipe")?;
        check_run_table(document)?;
        if let Some(Value::Table(defaults)) = root.get("defaults") {
            // `[defaults.trian_classifier]` would otherwise be ignored without a word.
            let kind_names: Vec<&str> = kinds.iter().map(|k| k.kind()).collect();
            check_known_keys(
                document,
                defaults,
                &["defaults"],
                &kind_names,
                "`[defaults]` (stage kinds)",
            )?;
        }
        let name = match root.get("name") {
            Some(Value::String(name)) if name.trim().is_empty() => {
                return Err(RecipeError::RecipeNameEmpty {
                    at: document.spans.value(&["name".to_owned()]),
                })
            }
            Some(Value::String(name)) => {
                if let Some(problem) = name_problem(name) {
                    return Err(RecipeError::RecipeNameInvalid {
                        problem,
                        at: document.spans.value(&["name".to_owned()]),
                    });
                }
                name.clone()
            }
            Some(other) => return Err(document.wrong_type("name", "a string", other)),
            None => {
                return Err(RecipeError::KeyMissing {
                    key: "name",
                    at: None,
                })
            }
        };
        let seed = match root.get("seed") {
            None => 0,
            Some(Value::Integer(seed)) if *seed >= 0 => *seed as u64,
            Some(other) => {
                return Err(document.wrong_type("seed", "a non-negative integer", other))
            }
        };
        let description = root
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let declared = declared_stages(document, kinds)?;
        let order = dependency_order(document, &declared)?;
        let position: BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, &d)| (declared[d].name.as_str(), i))
            .collect();
        let mut stages = Vec::with_capacity(order.len());
        for &d in &order {
            let stage = declared[d].resolve(document, &position, &stages)?;
            stages.push(stage);
        }
        let sweep = Sweep::parse(document, &stages)?;
        Ok(Recipe {
            name,
            seed,
            description,
            stages,
            sweep,
            document: document.clone(),
        })
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<(usize, &StageDecl)> {
        self.stages.iter().enumerate().find(|(_, s)| s.name == name)
    }
}

/// A stage table before its inputs are resolved to indices.
struct Declared {
    name: String,
    kind: &'static dyn StageKind,
    params: Table,
    /// Input name -> (stage name, output name).
    inputs: BTreeMap<String, (String, Option<String>)>,
}

impl Declared {
    /// Checks the parameters and the inputs against `resolved`, the stages before this one in
    /// dependency order (so every input's producer is among them).
    fn resolve(
        &self,
        document: &RecipeDocument,
        position: &BTreeMap<&str, usize>,
        resolved: &[StageDecl],
    ) -> Result<StageDecl, RecipeError> {
        let at = |rest: &[&str]| {
            let mut path = vec!["stages".to_owned(), self.name.clone()];
            path.extend(rest.iter().map(|s| s.to_string()));
            path
        };
        let checked = check_params(document, &self.name, self.kind, &self.params)?;
        for required in &checked.shape.required_inputs {
            if !self.inputs.contains_key(required) {
                return Err(RecipeError::StageInputMissing {
                    stage: self.name.clone(),
                    input: required.clone(),
                    at: document.spans.key(&at(&[])),
                });
            }
        }
        let mut inputs = BTreeMap::new();
        for (input, (target, output)) in &self.inputs {
            let stage = position[target.as_str()];
            if let Some(output) = output {
                check_output(
                    document,
                    &self.name,
                    input,
                    target,
                    output,
                    &resolved[stage],
                )?;
            }
            inputs.insert(
                input.clone(),
                InputRef {
                    stage,
                    output: output.clone(),
                },
            );
        }
        Ok(StageDecl {
            name: self.name.clone(),
            kind: self.kind,
            params: self.params.clone(),
            inputs,
            checked,
        })
    }
}

/// An input's `stage.output`: a name (never a path) among the outputs the producer declares.
fn check_output(
    document: &RecipeDocument,
    stage: &str,
    input: &str,
    target: &str,
    output: &str,
    producer: &StageDecl,
) -> Result<(), RecipeError> {
    let at = document.spans.value(&[
        "stages".to_owned(),
        stage.to_owned(),
        "inputs".to_owned(),
        input.to_owned(),
    ]);
    let is_name = !output.is_empty()
        && output
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !is_name {
        return Err(RecipeError::StageOutputNotAName {
            stage: stage.to_owned(),
            input: input.to_owned(),
            reference: format!("{target}.{output}"),
            at,
        });
    }
    let available = &producer.checked.shape.outputs;
    if available.iter().any(|o| o == output) {
        return Ok(());
    }
    Err(RecipeError::StageOutputUnknown {
        stage: stage.to_owned(),
        input: input.to_owned(),
        target: target.to_owned(),
        output: output.to_owned(),
        suggestion: suggest(output, available.iter().map(String::as_str)),
        available: available.clone(),
        at,
    })
}

/// Checks parameters against the stage kind, pointing errors at the offending entry.
pub fn check_params(
    document: &RecipeDocument,
    stage: &str,
    kind: &dyn StageKind,
    params: &Table,
) -> Result<CheckedParams, RecipeError> {
    kind.check(params).map_err(|err| {
        let mut path = vec!["stages".to_owned(), stage.to_owned()];
        path.extend(err.path.iter().cloned());
        let unknown_field = err.message.starts_with("unknown field");
        // A value the recipe left to the kind's defaults has no span: point at what encloses it.
        let at = (0..=err.path.len()).rev().find_map(|keep| {
            let prefix = &path[..path.len() - err.path.len() + keep];
            if unknown_field || keep < err.path.len() {
                document.spans.key(prefix)
            } else {
                document.spans.value(prefix)
            }
        });
        let dotted = err.path.join(".");
        let location = if err.path.is_empty() || err.message.contains(&format!("`{dotted}`")) {
            String::new()
        } else {
            format!("`{dotted}`: ")
        };
        // The TOML deserializer repeats the path on a second line; the span already shows it.
        let message = err.message.lines().next().unwrap_or_default();
        RecipeError::StageParamInvalid {
            stage: stage.to_owned(),
            message: format!("{location}{message}"),
            at,
        }
    })
}

/// Executors a recipe's `[run] executor` may name.
const EXECUTORS: &[&str] = &["local", "slurm"];

/// `[run]`: checked here, at plan time, so that `executor = "kubernetes"` is refused at its
/// line before anything runs, not when `run` reads the table.
fn check_run_table(document: &RecipeDocument) -> Result<(), RecipeError> {
    let Some(run) = document.root.get("run") else {
        return Ok(());
    };
    let Value::Table(run) = run else {
        return Err(document.wrong_type("run", "a table", run));
    };
    check_known_keys(document, run, &["run"], &["executor", "retries"], "`[run]`")?;
    match run.get("executor") {
        None => Ok(()),
        Some(Value::String(name)) if EXECUTORS.contains(&name.as_str()) => Ok(()),
        Some(other) => Err(RecipeError::ValueTypeWrong {
            key: "run.executor".to_owned(),
            expected: "`local` or `slurm`",
            found: match other {
                Value::String(_) => "another executor",
                other => other.type_str(),
            },
            at: document
                .spans
                .value(&["run".to_owned(), "executor".to_owned()]),
        }),
    }
}

/// The longest recipe name: it names folders (`results/<name>/`) and terminal lines.
const MAX_NAME_CHARS: usize = 100;

/// What is wrong with a recipe name, if anything: it is printed to terminals and names
/// folders, so control characters (escape sequences, newlines), bidirectional overrides (which
/// reorder what a terminal shows) and very long names are refused.
fn name_problem(name: &str) -> Option<String> {
    let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if let Some(c) = name.chars().find(|&c| c.is_control() || bidi(c)) {
        return Some(format!(
            "contains the control character U+{:04X}; use letters, digits and punctuation",
            c as u32
        ));
    }
    let chars = name.chars().count();
    (chars > MAX_NAME_CHARS)
        .then(|| format!("has {chars} characters, more than the {MAX_NAME_CHARS} a name may have"))
}

fn check_known_keys(
    document: &RecipeDocument,
    table: &Table,
    path: &[&str],
    known: &[&str],
    what: &str,
) -> Result<(), RecipeError> {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            let mut full: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            full.push(key.clone());
            return Err(RecipeError::KeyUnknown {
                key: key.clone(),
                table: what.to_owned(),
                suggestion: suggest(key, known.iter().copied()),
                at: document.spans.key(&full),
            });
        }
    }
    Ok(())
}

fn declared_stages(
    document: &RecipeDocument,
    kinds: &[&'static dyn StageKind],
) -> Result<Vec<Declared>, RecipeError> {
    let stages = match document.root.get("stages") {
        Some(Value::Table(stages)) if !stages.is_empty() => stages,
        Some(Value::Table(_)) | None => {
            return Err(RecipeError::StagesMissing {
                at: document.spans.key(&path_of("stages")),
            })
        }
        Some(other) => return Err(document.wrong_type("stages", "a table of stages", other)),
    };
    let names: Vec<&str> = stages.keys().map(String::as_str).collect();
    stages
        .iter()
        .map(|(name, table)| declare(document, name, table, &names, kinds))
        .collect()
}

fn declare(
    document: &RecipeDocument,
    name: &str,
    table: &Value,
    names: &[&str],
    kinds: &[&'static dyn StageKind],
) -> Result<Declared, RecipeError> {
    let path = |rest: &[&str]| {
        let mut p = vec!["stages".to_owned(), name.to_owned()];
        p.extend(rest.iter().map(|s| s.to_string()));
        p
    };
    let Value::Table(table) = table else {
        return Err(RecipeError::ValueTypeWrong {
            key: format!("stages.{name}"),
            expected: "a table",
            found: table.type_str(),
            at: document.spans.value(&path(&[])),
        });
    };
    if name.is_empty() {
        return Err(RecipeError::StageParamInvalid {
            stage: name.to_owned(),
            message: "a stage needs a name: `[stages.<name>]` with a non-empty name".to_owned(),
            at: document.spans.key(&path(&[])),
        });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(RecipeError::StageParamInvalid {
            stage: name.to_owned(),
            message: "stage names may only contain letters, digits, `_` and `-`".to_owned(),
            at: document.spans.key(&path(&[])),
        });
    }
    let kind_name = match table.get("kind") {
        Some(Value::String(kind)) => kind,
        Some(other) => {
            return Err(RecipeError::ValueTypeWrong {
                key: format!("stages.{name}.kind"),
                expected: "a string",
                found: other.type_str(),
                at: document.spans.value(&path(&["kind"])),
            })
        }
        None => {
            return Err(RecipeError::StageKindMissing {
                stage: name.to_owned(),
                at: document.spans.key(&path(&[])),
            })
        }
    };
    let kind = kinds.iter().copied().find(|k| k.kind() == kind_name);
    let kind = kind.ok_or_else(|| RecipeError::StageKindUnknown {
        stage: name.to_owned(),
        kind: kind_name.clone(),
        suggestion: suggest(kind_name, kinds.iter().map(|k| k.kind())),
        at: document.spans.value(&path(&["kind"])),
    })?;
    if let (Some(Value::Table(inputs)), Inputs::Named(specs)) = (table.get("inputs"), kind.inputs())
    {
        let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
        let inputs_path: Vec<&str> = ["stages", name, "inputs"].into();
        check_known_keys(
            document,
            inputs,
            &inputs_path,
            &known,
            &format!("the inputs of a `{kind_name}` stage"),
        )?;
    }
    let inputs = match table.get("inputs") {
        None => BTreeMap::new(),
        Some(Value::Table(inputs)) => inputs
            .iter()
            .map(|(input, reference)| {
                let at = document.spans.value(&path(&["inputs", input]));
                let Value::String(reference) = reference else {
                    return Err(RecipeError::ValueTypeWrong {
                        key: format!("stages.{name}.inputs.{input}"),
                        expected: "a stage reference such as \"data\" or \"data.train\"",
                        found: reference.type_str(),
                        at,
                    });
                };
                let (target, output) = match reference.split_once('.') {
                    Some((target, output)) => (target, Some(output.to_owned())),
                    None => (reference.as_str(), None),
                };
                if !names.contains(&target) {
                    return Err(RecipeError::StageInputUnknown {
                        stage: name.to_owned(),
                        input: input.clone(),
                        target: target.to_owned(),
                        suggestion: suggest(target, names.iter().copied()),
                        at,
                    });
                }
                Ok((input.clone(), (target.to_owned(), output)))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(RecipeError::ValueTypeWrong {
                key: format!("stages.{name}.inputs"),
                expected: "a table of stage references",
                found: other.type_str(),
                at: document.spans.value(&path(&["inputs"])),
            })
        }
    };
    let params = table
        .iter()
        .filter(|(key, _)| !STAGE_KEYS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Declared {
        name: name.to_owned(),
        kind,
        params,
        inputs,
    })
}

/// Orders stages so inputs come first; a cycle is an error naming every stage on it.
fn dependency_order(
    document: &RecipeDocument,
    declared: &[Declared],
) -> Result<Vec<usize>, RecipeError> {
    let mut graph = DiGraph::<usize, ()>::new();
    let nodes: Vec<NodeIndex> = (0..declared.len()).map(|i| graph.add_node(i)).collect();
    let index: BTreeMap<&str, usize> = declared
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    for (i, stage) in declared.iter().enumerate() {
        for (target, _) in stage.inputs.values() {
            graph.update_edge(nodes[index[target.as_str()]], nodes[i], ());
        }
    }
    match toposort(&graph, None) {
        Ok(order) => Ok(order.into_iter().map(|n| graph[n]).collect()),
        Err(cycle) => {
            // Start from the first declared stage on the cycle, so the message is stable.
            let start = tarjan_scc(&graph)
                .into_iter()
                .find(|component| component.contains(&cycle.node_id()))
                .and_then(|component| component.into_iter().min_by_key(|&n| graph[n]))
                .unwrap_or(cycle.node_id());
            let cycle = cycle_through(&graph, start);
            let names: Vec<String> = cycle
                .iter()
                .map(|&n| declared[graph[n]].name.clone())
                .collect();
            let first = &names[0];
            Err(RecipeError::CircularStageDependency {
                stage: first.clone(),
                at: document.spans.value(&[
                    "stages".to_owned(),
                    first.clone(),
                    "inputs".to_owned(),
                ]),
                cycle: names,
            })
        }
    }
}

/// The shortest cycle `start -> ... -> start` in "depends on" direction, found inside `start`'s
/// strongly connected component.
fn cycle_through(graph: &DiGraph<usize, ()>, start: NodeIndex) -> Vec<NodeIndex> {
    let component = tarjan_scc(graph)
        .into_iter()
        .find(|c| c.contains(&start))
        .unwrap_or_default();
    // `depends_on_me[d] = n`: n depends on d, reached breadth-first from `start`.
    let mut depends_on_me = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut closing = start;
    'search: while let Some(node) = queue.pop_front() {
        for dependency in graph.neighbors_directed(node, petgraph::Direction::Incoming) {
            if dependency == start {
                closing = node;
                break 'search;
            }
            if component.contains(&dependency) && !depends_on_me.contains_key(&dependency) {
                depends_on_me.insert(dependency, node);
                queue.push_back(dependency);
            }
        }
    }
    let mut middle = Vec::new();
    let mut node = closing;
    while node != start {
        middle.push(node);
        node = depends_on_me[&node];
    }
    middle.reverse();
    let mut cycle = vec![start];
    cycle.extend(middle);
    cycle.push(start);
    cycle
}
