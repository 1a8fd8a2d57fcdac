//! The face UNet against FACE_UNET.md: its variable names and shapes at full size equal the
//! 427-entry list (expanded here from the document's templates), and its forward pass agrees
//! with a PyTorch implementation written from the same description (`tests/oracles/face_unet.py`) to
//! 1e-4 at a reduced width, with the same random weights (a `torch.save`d state_dict read by
//! hwrun's PyTorch-file reader).

use crate::common;

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use hwrun::models::weights::{load_file_strict, load_into, Unexpected};
use hwrun::models::{FaceUnet, FaceUnetConfig};
use tch::{nn, Device, Tensor};

const ORACLE: &str = include_str!("oracles/face_unet.py");

/// FACE_UNET.md's table: (modules, kind, C_in, C_out, attention).
const TABLE: &[(&[&str], &str, i64, i64, bool)] = &[
    (&["down2", "down3"], "res", 128, 128, false),
    (&["down4"], "down", 128, 128, false),
    (&["down5", "down6"], "res", 128, 128, false),
    (&["down7"], "down", 128, 128, false),
    (&["down8"], "res", 128, 256, false),
    (&["down9"], "res", 256, 256, false),
    (&["down10"], "down", 256, 256, false),
    (&["down11", "down12"], "res", 256, 256, false),
    (&["down13"], "down", 256, 256, false),
    (&["down14"], "res", 256, 512, true),
    (&["down15"], "res", 512, 512, true),
    (&["down16"], "down", 512, 512, false),
    (&["down17", "down18"], "res", 512, 512, false),
    (&["mid1"], "res", 512, 512, true),
    (&["mid2"], "res", 512, 512, false),
    (&["up1", "up2", "up3"], "res", 1024, 512, false),
    (&["up4"], "up", 512, 512, false),
    (&["up5", "up6"], "res", 1024, 512, true),
    (&["up7"], "res", 768, 512, true),
    (&["up8"], "up", 512, 512, false),
    (&["up9"], "res", 768, 256, false),
    (&["up10", "up11"], "res", 512, 256, false),
    (&["up12"], "up", 256, 256, false),
    (&["up13", "up14"], "res", 512, 256, false),
    (&["up15"], "res", 384, 256, false),
    (&["up16"], "up", 256, 256, false),
    (&["up17"], "res", 384, 128, false),
    (&["up18", "up19"], "res", 256, 128, false),
    (&["up20"], "up", 128, 128, false),
    (&["up21", "up22", "up23"], "res", 256, 128, false),
];

/// The document's ordered state_dict list.
fn expected_entries() -> Vec<(String, Vec<i64>)> {
    let mut list: Vec<(String, Vec<i64>)> = vec![
        ("time.0.inv_freq".into(), vec![64]),
        ("time.1.weight".into(), vec![512, 128]),
        ("time.1.bias".into(), vec![512]),
        ("time.3.weight".into(), vec![512, 512]),
        ("time.3.bias".into(), vec![512]),
        ("down1.weight".into(), vec![128, 3, 3, 3]),
        ("down1.bias".into(), vec![128]),
    ];
    for &(names, kind, ci, co, attention) in TABLE {
        for name in names {
            let mut add = |suffix: &str, shape: &[i64]| {
                list.push((format!("{name}.{suffix}"), shape.to_vec()))
            };
            match kind {
                "down" => {
                    add("0.weight", &[co, ci, 3, 3]);
                    add("0.bias", &[co]);
                }
                "up" => {
                    add("1.weight", &[co, ci, 3, 3]);
                    add("1.bias", &[co]);
                }
                _ => {
                    add("resblocks.norm1.weight", &[ci]);
                    add("resblocks.norm1.bias", &[ci]);
                    add("resblocks.conv1.weight", &[co, ci, 3, 3]);
                    add("resblocks.conv1.bias", &[co]);
                    add("resblocks.time.1.weight", &[co, 512]);
                    add("resblocks.time.1.bias", &[co]);
                    add("resblocks.norm2.weight", &[co]);
                    add("resblocks.norm2.bias", &[co]);
                    add("resblocks.conv2.weight", &[co, co, 3, 3]);
                    add("resblocks.conv2.bias", &[co]);
                    if ci != co {
                        add("resblocks.skip.weight", &[co, ci, 1, 1]);
                        add("resblocks.skip.bias", &[co]);
                    }
                    if attention {
                        add("attention.norm.weight", &[co]);
                        add("attention.norm.bias", &[co]);
                        add("attention.qkv.weight", &[3 * co, co, 1, 1]);
                        add("attention.qkv.bias", &[3 * co]);
                        add("attention.out.weight", &[co, co, 1, 1]);
                        add("attention.out.bias", &[co]);
                    }
                }
            }
        }
    }
    list.extend([
        ("out.0.weight".into(), vec![128]),
        ("out.0.bias".into(), vec![128]),
        ("out.2.weight".into(), vec![3, 128, 3, 3]),
        ("out.2.bias".into(), vec![3]),
    ]);
    list
}

#[test]
fn names_and_shapes_are_the_427_of_the_course_network() {
    let expected = expected_entries();
    assert_eq!(expected.len(), 427);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = FaceUnet::new(&vs.root(), FaceUnetConfig::COURSE).unwrap();
    let ours: BTreeMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    let theirs: BTreeMap<String, Vec<i64>> = expected.into_iter().collect();
    let missing: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    for (name, shape) in &theirs {
        assert_eq!(&ours[name], shape, "{name}");
    }
}

#[test]
fn forward_pass_agrees_with_pytorch_at_a_reduced_width() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let (base, groups, size) = (32, 8, 64);
    let printed = common::run_python(
        &format!("import sys\nsys.argv = ['oracle'] + sys.argv[1:]\n{ORACLE}"),
        &[
            dir.as_str(),
            &base.to_string(),
            &groups.to_string(),
            &size.to_string(),
        ],
    );
    assert_eq!(printed.trim(), "427");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = FaceUnet::new(
        &vs.root(),
        FaceUnetConfig {
            base_channels: base,
            groups,
        },
    )
    .unwrap();
    // A `torch.save`d state_dict, read by hwrun's PyTorch-file reader, every name checked.
    load_file_strict(&vs, &dir.join("UNet.pt")).unwrap();
    let io: BTreeMap<String, Tensor> = Tensor::read_safetensors(dir.join("io.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    let y = tch::no_grad(|| net.forward(&io["x"], &io["t"]));
    let diff = (&y - &io["y"]).abs().max().double_value(&[]);
    let scale = io["y"].abs().max().double_value(&[]);
    eprintln!("face UNet forward: max |diff| {diff:e}, max |y| {scale}");
    assert!(diff < 1e-4, "max difference {diff}");
}

#[test]
fn weights_of_another_network_are_refused_by_name() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = FaceUnet::new(
        &vs.root(),
        FaceUnetConfig {
            base_channels: 32,
            groups: 8,
        },
    )
    .unwrap();
    let mut tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n != "mid1.attention.qkv.bias")
        .collect();
    tensors.push((
        "feature.conv1.weight".into(),
        Tensor::zeros([4, 3, 5, 5], (tch::Kind::Float, Device::Cpu)),
    ));
    let err = load_into(&vs, tensors, Unexpected::Refuse, "UNet.pt")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("UNet.pt")
            && err.contains("missing (1): mid1.attention.qkv.bias")
            && err.contains("unexpected (1): feature.conv1.weight"),
        "{err}"
    );
}
