//! Networks as data against PyTorch (`tests/oracles/network.py`): the seed reports' printouts
//! (`tests/data/networks/`, copied from `SEED_NETWORKS.md`) are read by hwrun and built by
//! PyTorch from the same text, and both must say the same: the `print(model)` text of torch
//! 2.13, the parameter count (also the one `SEED_NETWORKS.md` states), the `state_dict` names
//! and shapes in order and, for the networks whose forward is their children in order, the
//! output shape. Then the TOML form, and what `hwrun net` says of bad input.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::project::Project;
use crate::common::run_python;

const ORACLE: &str = include_str!("oracles/network.py");

/// Every seed network hwrun reads, with the parameter count `SEED_NETWORKS.md` states.
/// (`s003_ddpm_unet` is left out: its self-attention prints a `MultiheadAttention`.)
const SEED_NETWORKS: &[(&str, i64)] = &[
    ("s000_gan_b_generator", 6_713_987),
    ("s000_gan_b_discriminator", 5_865_793),
    ("s000_ddpm_contextunet", 26_320_387),
    ("s000_dann_paper", 205_992),
    ("s001_dcgan_generator", 3_576_704),
    ("s001_dcgan_discriminator", 2_765_568),
    ("s001_acgan_generator", 1_607_760),
    ("s001_acgan_discriminator", 1_612_147),
    ("s001_dann_bn", 206_352),
    ("s001_adda_encoder", 426_070),
    ("s001_adda_classifier", 5_010),
    ("s001_adda_discriminator", 251_502),
    ("s002_ddpm_contextunet", 6_590_211),
    ("s002_dann_extractor", 179_712),
    ("s002_dann_classifier", 399_626),
    ("s002_dann_discriminator", 34_050),
    ("s003_gan_a_generator", 18_855_040),
    ("s003_gan_a_discriminator", 2_765_568),
    ("s003_gan_b_critic", 2_878_464),
    ("s004_wgangp_generator", 5_114_880),
    ("s004_wgangp_critic", 2_879_425),
    ("s004_acgan_generator", 5_019_648),
    ("s004_acgan_discriminator", 45_389),
    ("s004_dann", 354_474),
];

/// The networks whose forward is their children in order, with the input of one sample and the
/// output shape `SEED_NETWORKS.md` gives (before any `.view(-1)` of the training code).
const SEQUENTIAL: &[(&str, &str, &[i64])] = &[
    ("s000_gan_b_generator", "100x1x1", &[3, 64, 64]),
    ("s000_gan_b_discriminator", "3x64x64", &[1, 1, 1]),
    ("s001_dcgan_generator", "100x1x1", &[3, 64, 64]),
    ("s001_dcgan_discriminator", "3x64x64", &[1, 1, 1]),
    ("s001_acgan_generator", "101", &[3, 64, 64]),
    ("s001_adda_encoder", "1x28x28", &[500]),
    ("s001_adda_classifier", "500", &[10]),
    ("s001_adda_discriminator", "500", &[2]),
    ("s002_dann_extractor", "3x28x28", &[128, 1, 1]),
    ("s002_dann_classifier", "128", &[10]),
    ("s002_dann_discriminator", "128", &[2]),
    ("s003_gan_a_generator", "100x1x1", &[3, 64, 64]),
    ("s003_gan_a_discriminator", "3x64x64", &[1, 1, 1]),
    ("s003_gan_b_critic", "3x64x64", &[1, 1, 1]),
    ("s004_wgangp_critic", "3x64x64", &[1, 1, 1]),
    ("s004_acgan_generator", "110", &[3, 28, 28]),
];

fn fixture(id: &str, extension: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/networks")
        .join(format!("{id}.{extension}"))
}

fn printout(id: &str) -> String {
    std::fs::read_to_string(fixture(id, "txt")).expect("fixture")
}

/// The oracle's report of each `file[:input]` argument.
fn oracle(arguments: &[String]) -> Vec<Value> {
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let text = run_python(ORACLE, &arguments);
    serde_json::from_str::<Vec<Value>>(&text).expect("the oracle prints JSON")
}

#[test]
fn network_printouts_counts_and_state_dicts_match_pytorch() {
    let files: Vec<String> = SEED_NETWORKS
        .iter()
        .map(|(id, _)| fixture(id, "txt").display().to_string())
        .collect();
    let reports = oracle(&files);
    for ((id, stated), pytorch) in SEED_NETWORKS.iter().zip(&reports) {
        let network = hwrun::network::printout::parse(&printout(id))
            .unwrap_or_else(|error| panic!("{id}: {error}"))
            .network;
        assert_eq!(
            network.tree().to_string(),
            pytorch["print"].as_str().unwrap(),
            "{id}: print(model)"
        );
        assert_eq!(
            network.parameter_count(),
            *stated,
            "{id}: SEED_NETWORKS.md's count"
        );
        assert_eq!(
            network.parameter_count(),
            pytorch["params"].as_i64().unwrap(),
            "{id}: PyTorch's count"
        );
        let state_dict: Vec<Value> = network
            .state_dict()
            .into_iter()
            .map(|entry| serde_json::json!([entry.name, entry.shape]))
            .collect();
        assert_eq!(
            Value::Array(state_dict),
            pytorch["state_dict"],
            "{id}: state_dict names, shapes and order"
        );
        // A printout from torch 2.13 (with `bias=True` on the norms) reads as the same network.
        let reprinted = hwrun::network::printout::parse(&network.tree().to_string())
            .unwrap_or_else(|error| panic!("{id} as torch 2.13 prints it: {error}"))
            .network;
        assert_eq!(reprinted, network, "{id}");
    }
}

#[test]
fn network_net_command_gives_pytorchs_output_shapes() {
    let arguments: Vec<String> = SEQUENTIAL
        .iter()
        .map(|(id, input, _)| format!("{}:{input}", fixture(id, "txt").display()))
        .collect();
    let reports = oracle(&arguments);
    let project = Project::new();
    for ((id, input, stated), pytorch) in SEQUENTIAL.iter().zip(&reports) {
        let file = fixture(id, "txt");
        let json = project.run_json_ok(&["net", file.to_str().unwrap(), "--input", input]);
        assert_eq!(
            json["output"],
            serde_json::json!(stated),
            "{id}: SEED_NETWORKS.md"
        );
        assert_eq!(json["output"], pytorch["output"], "{id}: PyTorch's output");
        assert_eq!(json["params"], pytorch["params"], "{id}");
        let names: Vec<&str> = json["state_dict"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names.len(),
            pytorch["state_dict"].as_array().unwrap().len(),
            "{id}"
        );
        for entry in pytorch["state_dict"].as_array().unwrap() {
            assert_eq!(
                json["state_dict"][entry[0].as_str().unwrap()],
                entry[1],
                "{id}: {entry}"
            );
        }
    }
}

#[test]
fn network_toml_form_and_printout_are_the_same_network() {
    let from_toml = hwrun::network::toml_form::parse(
        &std::fs::read_to_string(fixture("s001_dcgan_generator", "toml")).unwrap(),
    )
    .unwrap()
    .network;
    let from_printout = hwrun::network::printout::parse(&printout("s001_dcgan_generator"))
        .unwrap()
        .network;
    assert_eq!(from_toml, from_printout);
    let project = Project::new();
    let describe = |extension: &str| {
        let file = fixture("s001_dcgan_generator", extension);
        project.run_json_ok(&["net", file.to_str().unwrap(), "--input", "100x1x1"])
    };
    assert_eq!(describe("toml"), describe("txt"));
}

#[test]
fn network_bad_input_exits_2_with_the_located_error() {
    let project = Project::new();
    let typo = project.write(
        "typo.txt",
        "Net(\n  (fc): Linear(in_features=4, out_features=2, bias=True)\n  (act): LeakyRelu(negative_slope=0.2)\n)\n",
    );
    let output = project.hwrun(&["net", typo.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown layer `LeakyRelu`"), "{stderr}");
    assert!(stderr.contains("typo.txt:3:10"), "{stderr}");
    assert!(stderr.contains("did you mean `LeakyReLU`?"), "{stderr}");

    // A second stage that expects twice the channels the first one gives.
    let mismatch = printout("s001_dcgan_generator").replace(
        "(0): ConvTranspose2d(512, 256,",
        "(0): ConvTranspose2d(1024, 256,",
    );
    let file = project.write("mismatch.txt", &mismatch);
    let (code, json) = project.run_json(&["net", file.to_str().unwrap(), "--input", "100x1x1"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        json["error"],
        "layer `layer2.0` expects 1024 input channels, gets 512"
    );
    assert_eq!(json["location"]["line"], 8);
    assert_eq!(json["location"]["column"], 10);

    let missing = project.hwrun(&["net", "no-such-network.txt"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn network_built_with_libtorch_computes_pytorchs_forward() {
    let dir = tempfile::tempdir().unwrap();
    let arguments: Vec<String> = SEQUENTIAL
        .iter()
        .map(|(id, input, _)| format!("{}:{input}", fixture(id, "txt").display()))
        .collect();
    let mut command = vec!["--forward", dir.path().to_str().unwrap()];
    command.extend(arguments.iter().map(String::as_str));
    run_python(ORACLE, &command);
    for (id, input, _) in SEQUENTIAL {
        let described = hwrun::network::printout::parse(&printout(id)).unwrap();
        let input: Vec<i64> = input.split('x').map(|d| d.parse().unwrap()).collect();
        let shapes =
            hwrun::network::shape::infer(&described.network, &input, &described.locations).unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let built = hwrun::network::build::build(&described.network, &shapes, &vs.root())
            .unwrap_or_else(|error| panic!("{id}: {error}"));
        let weights = dir.path().join(format!("{id}.pt"));
        hwrun::models::weights::load_file_strict(
            &vs,
            camino::Utf8Path::from_path(&weights).unwrap(),
        )
        .unwrap_or_else(|error| panic!("{id}: {error}"));
        let tensors: std::collections::HashMap<String, tch::Tensor> =
            tch::Tensor::read_safetensors(dir.path().join(format!("{id}.safetensors")))
                .unwrap()
                .into_iter()
                .collect();
        let y = tch::no_grad(|| built.forward_t(&tensors["x"], false));
        assert_eq!(y.size(), tensors["y"].size(), "{id}");
        let difference = (&y - &tensors["y"]).abs().max().double_value(&[]);
        assert!(
            difference < 1e-5,
            "{id}: the outputs differ by {difference}"
        );
        assert_eq!(
            built.tree().to_string(),
            described.network.tree().to_string()
        );
    }
}

/// The `state_dict` keys of hook-style spectral norm that `SEED_NETWORKS.md` lists for
/// `s003_gan_b_critic` in place of each conv's `weight`.
const CRITIC_HIDDEN_KEYS: &[&str] = &[
    "disc.0.weight_orig",
    "disc.0.weight_u",
    "disc.0.weight_v",
    "disc.2.0.weight_orig",
    "disc.2.0.weight_u",
    "disc.2.0.weight_v",
    "disc.3.0.weight_orig",
    "disc.3.0.weight_u",
    "disc.3.0.weight_v",
    "disc.4.0.weight_orig",
    "disc.4.0.weight_u",
    "disc.4.0.weight_v",
    "disc.5.weight_orig",
    "disc.5.weight_u",
    "disc.5.weight_v",
];

#[test]
fn network_spectral_norm_has_pytorchs_hidden_keys() {
    // The printout cannot show hook-style spectral norm; hwrun's `spectral_norm=True` says it.
    let text =
        printout("s003_gan_b_critic").replace("bias=False)", "bias=False, spectral_norm=True)");
    let network = hwrun::network::printout::parse(&text).unwrap().network;
    let file = fixture("s003_gan_b_critic", "txt").display().to_string();
    let pytorch = &oracle(&["--spectral".to_owned(), file])[0];
    assert_eq!(
        network.tree().to_string(),
        pytorch["print"].as_str().unwrap()
    );
    assert_eq!(network.parameter_count(), 2_878_464);
    assert_eq!(
        network.parameter_count(),
        pytorch["params"].as_i64().unwrap()
    );
    let state_dict: Vec<Value> = network
        .state_dict()
        .into_iter()
        .map(|entry| serde_json::json!([entry.name, entry.shape]))
        .collect();
    assert_eq!(Value::Array(state_dict), pytorch["state_dict"]);
    let hidden: Vec<String> = network
        .state_dict()
        .into_iter()
        .map(|entry| entry.name)
        .filter(|name| name.contains("weight_"))
        .collect();
    assert_eq!(hidden, CRITIC_HIDDEN_KEYS);
}

#[test]
fn network_net_command_prints_what_pytorch_would() {
    let project = Project::new();
    let file = fixture("s001_adda_encoder", "txt");
    let output = project.hwrun(&["net", file.to_str().unwrap(), "--input", "1x28x28"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("Encoder(\n  (feature_extractor): Sequential(\n"),
        "{text}"
    );
    assert!(text.contains("Total parameters: 426,070\n"), "{text}");
    assert!(
        text.contains("  fc1.weight                  [500, 800]\n"),
        "{text}"
    );
    assert!(
        text.contains("note: `fc1` reads its [50, 4, 4] input as [800]"),
        "{text}"
    );
    assert!(text.ends_with("output: [500]\n"), "{text}");
}
