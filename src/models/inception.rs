//! The Inception v3 of FID and Inception Score: pytorch-fid's `FIDInceptionA/C/E_1/E_2`
//! patches of torchvision's `Inception3` (1008 classes, no aux head), in eval mode only.
//!
//! Variables carry torchvision's `state_dict` names (`Conv2d_1a_3x3.conv.weight`,
//! `Mixed_5b.branch1x1.bn.running_mean`, `fc.weight`, ...), so the official
//! `pt_inception-2015-12-05-6726825d.pth` loads by name; [`FidInception::from_tensors`] reports
//! every missing and unexpected name and every shape mismatch.
//!
//! What differs from torchvision: BatchNorm eps 1e-3, convolutions without bias, the pool branch
//! of Mixed_5b-5d, 6b-6e and 7b is `avg_pool2d(3, 1, 1, count_include_pad=False)` (TensorFlow's
//! average pool ignores the padding), Mixed_7c's is `max_pool2d(3, 1, 1)`.
//!
//! Two input pipelines, each as its reference tool does it:
//! - FID ([`FidInception::fid_features`], pytorch-fid's `InceptionV3(resize_input=True,
//!   normalize_input=True)`): u8 / 255, bilinear resize to 299x299 (`align_corners=False`, no
//!   antialias), `2x - 1`; the 64/192/768/2048 blocks (after each block's pooling), averaged
//!   over space when not 1x1.
//! - Inception Score ([`FidInception::logits_unbiased`], torch-fidelity's
//!   `FeatureExtractorInceptionV3`): u8 as float, TensorFlow 1.x bilinear resize (source pixel
//!   = destination pixel x in/out, no half-pixel offset), `(x - 128) / 128`, and the 1008 logits
//!   of the 2048-d pool features without the fc bias.
//!
//! Speed: every BatchNorm is folded into its convolution once at load time (eval mode is a fixed
//! affine map), the 1x1 convolutions of a block that read the same input run as one wider
//! convolution, and activations stay channels-last (libtorch's oneDNN kernels then need no
//! layout reorders).

use std::collections::{BTreeMap, HashMap};

use crate::accel::memory_format::channels_last;
use crate::models::weights::WeightsMismatch;
use camino::{Utf8Path, Utf8PathBuf};
use tch::{Device, Kind, Tensor};

/// pytorch-fid's BatchNorm eps (TensorFlow's default), not PyTorch's 1e-5.
const BN_EPS: f64 = 1e-3;
/// Logits of the 2015 TensorFlow graph: 1000 ImageNet classes plus 8 unused ones.
pub const CLASSES: i64 = 1008;
/// The input size the network was trained at.
pub const INPUT_SIZE: i64 = 299;

/// The official weights (pytorch-fid's release; torch.hub names carry the sha256's first 8 hex
/// digits).
pub const WEIGHTS_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";
pub const WEIGHTS_URL: &str =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";

/// Feature dimensions pytorch-fid offers (`--dims`), by block index.
pub const FEATURE_DIMS: [i64; 4] = [64, 192, 768, 2048];

/// Why weights could not be turned into the network.
#[derive(Debug, thiserror::Error)]
pub enum InceptionError {
    #[error("{0}\n  is this the right file ({WEIGHTS_FILE})?")]
    Mismatch(WeightsMismatch),
    #[error("cannot read the Inception weights {path}: {message}; is the file complete? download it again")]
    Read { path: Utf8PathBuf, message: String },
    #[error("{path}: unknown weights format `{extension}`: give a PyTorch file (`.pth`, `.pt`) or `.safetensors`")]
    Format {
        path: Utf8PathBuf,
        extension: String,
    },
    #[error("`--dims {0}` is not an Inception block size: choose one of 64, 192, 768, 2048")]
    Dims(i64),
    #[error("libtorch failed while preparing the weights: {0}")]
    Torch(#[from] tch::TchError),
}

/// Reads a weights file by its extension: `.safetensors`, or a PyTorch `state_dict` file
/// (`.pth`, `.pt`, as `torch.save` writes them).
pub fn load_inception_weights(path: &Utf8Path) -> Result<Vec<(String, Tensor)>, InceptionError> {
    let read_error = |message: String| InceptionError::Read {
        path: path.to_owned(),
        message,
    };
    match path.extension().map(str::to_ascii_lowercase).as_deref() {
        Some("safetensors") => {
            Tensor::read_safetensors(path).map_err(|e| read_error(e.to_string()))
        }
        Some("pth" | "pt") => {
            crate::pytorch_file::read_state_dict(path).map_err(|e| read_error(e.to_string()))
        }
        other => Err(InceptionError::Format {
            path: path.to_owned(),
            extension: other.unwrap_or("").to_owned(),
        }),
    }
}

/// Block index of a feature dimension (`--dims`).
pub fn block_of_dims(dims: i64) -> Result<usize, InceptionError> {
    FEATURE_DIMS
        .iter()
        .position(|&d| d == dims)
        .ok_or(InceptionError::Dims(dims))
}

/// One torchvision `BasicConv2d` (conv without bias, BatchNorm, ReLU), as a convolution with
/// the BatchNorm folded in.
#[derive(Debug, Clone, Copy)]
struct ConvSpec {
    name: &'static str,
    in_channels: i64,
    out_channels: i64,
    kernel: [i64; 2],
    stride: i64,
    padding: [i64; 2],
}

const fn conv(name: &'static str, in_channels: i64, out_channels: i64, kernel: i64) -> ConvSpec {
    ConvSpec {
        name,
        in_channels,
        out_channels,
        kernel: [kernel, kernel],
        stride: 1,
        padding: [0, 0],
    }
}

impl ConvSpec {
    const fn stride(mut self, stride: i64) -> Self {
        self.stride = stride;
        self
    }
    const fn pad(mut self, padding: i64) -> Self {
        self.padding = [padding, padding];
        self
    }
    /// A `(kh, kw)` kernel with the padding that keeps the size, like torchvision's `(1, 7)`
    /// with `(0, 3)`.
    const fn rect(mut self, kh: i64, kw: i64) -> Self {
        self.kernel = [kh, kw];
        self.padding = [kh / 2, kw / 2];
        self
    }
}

/// The names and shapes of one conv's `state_dict` entries.
fn conv_entries(prefix: &str, spec: &ConvSpec, out: &mut BTreeMap<String, Vec<i64>>) {
    let base = format!("{prefix}{}", spec.name);
    let [kh, kw] = spec.kernel;
    out.insert(
        format!("{base}.conv.weight"),
        vec![spec.out_channels, spec.in_channels, kh, kw],
    );
    for buffer in ["weight", "bias", "running_mean", "running_var"] {
        out.insert(format!("{base}.bn.{buffer}"), vec![spec.out_channels]);
    }
}

/// A convolution with its BatchNorm folded in, followed by ReLU.
struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    stride: [i64; 2],
    padding: [i64; 2],
}

impl FoldedConv {
    /// `w * gamma / sqrt(var + eps)` and `beta - mean * gamma / sqrt(var + eps)`, computed in f64
    /// so the fold adds no rounding beyond the final f32 cast.
    fn fold(
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        spec: &ConvSpec,
        device: Device,
    ) -> FoldedConv {
        let base = format!("{prefix}{}", spec.name);
        let get = |suffix: &str| tensors[&format!("{base}.{suffix}")].to_kind(Kind::Double);
        let scale = get("bn.weight") / (get("bn.running_var") + BN_EPS).sqrt();
        let weight = get("conv.weight") * scale.view([-1, 1, 1, 1]);
        let bias = get("bn.bias") - get("bn.running_mean") * &scale;
        FoldedConv {
            weight: channels_last(&weight.to_kind(Kind::Float).to_device(device)),
            bias: bias.to_kind(Kind::Float).to_device(device),
            stride: [spec.stride, spec.stride],
            padding: spec.padding,
        }
    }

    /// Several 1x1 convolutions of the same input as one (their weights stacked), so the GEMM
    /// is wider; [`FusedConvs::forward`] splits the result again.
    fn stack(parts: Vec<FoldedConv>) -> (FoldedConv, Vec<i64>) {
        let sizes = parts.iter().map(|p| p.weight.size()[0]).collect();
        let weight = Tensor::cat(&parts.iter().map(|p| &p.weight).collect::<Vec<_>>(), 0);
        let bias = Tensor::cat(&parts.iter().map(|p| &p.bias).collect::<Vec<_>>(), 0);
        (
            FoldedConv {
                weight: channels_last(&weight),
                bias,
                stride: parts[0].stride,
                padding: parts[0].padding,
            },
            sizes,
        )
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            Some(&self.bias),
            self.stride,
            self.padding,
            [1, 1],
            1,
        )
        .relu_()
    }
}

/// The 1x1 convolutions of a block that read the block's input, run as one.
struct FusedConvs {
    conv: FoldedConv,
    sizes: Vec<i64>,
}

impl FusedConvs {
    fn new(parts: Vec<FoldedConv>) -> FusedConvs {
        let (conv, sizes) = FoldedConv::stack(parts);
        FusedConvs { conv, sizes }
    }

    fn forward(&self, x: &Tensor) -> Vec<Tensor> {
        self.conv.forward(x).split_with_sizes(&self.sizes, 1)
    }
}

/// Which pooling feeds a block's `branch_pool`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PoolBranch {
    /// `avg_pool2d(3, 1, 1, count_include_pad=False)`: the FID patch of 5b-5d, 6b-6e, 7b.
    AverageWithoutPadding,
    /// `max_pool2d(3, 1, 1)`: the FID patch of 7c.
    Max,
}

fn pool_branch(x: &Tensor, pool: PoolBranch) -> Tensor {
    match pool {
        PoolBranch::AverageWithoutPadding => {
            x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>)
        }
        PoolBranch::Max => x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false),
    }
}

/// The mixed blocks, by torchvision's class.
#[derive(Debug, Clone, Copy)]
enum MixedKind {
    /// `InceptionA(in, pool_features)`.
    A { pool_features: i64 },
    /// `InceptionB(in)` (grid reduction 35 -> 17).
    B,
    /// `InceptionC(in, channels_7x7)`.
    C { c7: i64 },
    /// `InceptionD(in)` (grid reduction 17 -> 8).
    D,
    /// `InceptionE(in)` with its pool branch.
    E { pool: PoolBranch },
}

/// Every mixed block: name, input channels, kind.
const MIXED: [(&str, i64, MixedKind); 11] = [
    ("Mixed_5b", 192, MixedKind::A { pool_features: 32 }),
    ("Mixed_5c", 256, MixedKind::A { pool_features: 64 }),
    ("Mixed_5d", 288, MixedKind::A { pool_features: 64 }),
    ("Mixed_6a", 288, MixedKind::B),
    ("Mixed_6b", 768, MixedKind::C { c7: 128 }),
    ("Mixed_6c", 768, MixedKind::C { c7: 160 }),
    ("Mixed_6d", 768, MixedKind::C { c7: 160 }),
    ("Mixed_6e", 768, MixedKind::C { c7: 192 }),
    ("Mixed_7a", 768, MixedKind::D),
    (
        "Mixed_7b",
        1280,
        MixedKind::E {
            pool: PoolBranch::AverageWithoutPadding,
        },
    ),
    (
        "Mixed_7c",
        2048,
        MixedKind::E {
            pool: PoolBranch::Max,
        },
    ),
];

/// The stem convolutions, in order; max pools follow `Conv2d_2b_3x3` and `Conv2d_4a_3x3`.
const STEM: [ConvSpec; 5] = [
    conv("Conv2d_1a_3x3", 3, 32, 3).stride(2),
    conv("Conv2d_2a_3x3", 32, 32, 3),
    conv("Conv2d_2b_3x3", 32, 64, 3).pad(1),
    conv("Conv2d_3b_1x1", 64, 80, 1),
    conv("Conv2d_4a_3x3", 80, 192, 3),
];

/// The convolutions of a mixed block, grouped as they run: `[0]` are the 1x1 convolutions of
/// the block input (fused), the rest are chains; see [`Mixed::forward`].
fn mixed_convs(kind: MixedKind, c: i64) -> Vec<ConvSpec> {
    match kind {
        MixedKind::A { pool_features } => vec![
            conv("branch1x1", c, 64, 1),
            conv("branch5x5_1", c, 48, 1),
            conv("branch3x3dbl_1", c, 64, 1),
            conv("branch5x5_2", 48, 64, 5).pad(2),
            conv("branch3x3dbl_2", 64, 96, 3).pad(1),
            conv("branch3x3dbl_3", 96, 96, 3).pad(1),
            conv("branch_pool", c, pool_features, 1),
        ],
        MixedKind::B => vec![
            conv("branch3x3", c, 384, 3).stride(2),
            conv("branch3x3dbl_1", c, 64, 1),
            conv("branch3x3dbl_2", 64, 96, 3).pad(1),
            conv("branch3x3dbl_3", 96, 96, 3).stride(2),
        ],
        MixedKind::C { c7 } => vec![
            conv("branch1x1", c, 192, 1),
            conv("branch7x7_1", c, c7, 1),
            conv("branch7x7dbl_1", c, c7, 1),
            conv("branch7x7_2", c7, c7, 1).rect(1, 7),
            conv("branch7x7_3", c7, 192, 1).rect(7, 1),
            conv("branch7x7dbl_2", c7, c7, 1).rect(7, 1),
            conv("branch7x7dbl_3", c7, c7, 1).rect(1, 7),
            conv("branch7x7dbl_4", c7, c7, 1).rect(7, 1),
            conv("branch7x7dbl_5", c7, 192, 1).rect(1, 7),
            conv("branch_pool", c, 192, 1),
        ],
        MixedKind::D => vec![
            conv("branch3x3_1", c, 192, 1),
            conv("branch7x7x3_1", c, 192, 1),
            conv("branch3x3_2", 192, 320, 3).stride(2),
            conv("branch7x7x3_2", 192, 192, 1).rect(1, 7),
            conv("branch7x7x3_3", 192, 192, 1).rect(7, 1),
            conv("branch7x7x3_4", 192, 192, 3).stride(2),
        ],
        MixedKind::E { .. } => vec![
            conv("branch1x1", c, 320, 1),
            conv("branch3x3_1", c, 384, 1),
            conv("branch3x3dbl_1", c, 448, 1),
            conv("branch3x3_2a", 384, 384, 1).rect(1, 3),
            conv("branch3x3_2b", 384, 384, 1).rect(3, 1),
            conv("branch3x3dbl_2", 448, 384, 3).pad(1),
            conv("branch3x3dbl_3a", 384, 384, 1).rect(1, 3),
            conv("branch3x3dbl_3b", 384, 384, 1).rect(3, 1),
            conv("branch_pool", c, 192, 1),
        ],
    }
}

/// How many leading convolutions of [`mixed_convs`] read the block input and are fused.
fn fused_count(kind: MixedKind) -> usize {
    match kind {
        MixedKind::A { .. } | MixedKind::C { .. } | MixedKind::E { .. } => 3,
        MixedKind::B => 0,
        MixedKind::D => 2,
    }
}

/// One mixed block with folded weights.
struct Mixed {
    kind: MixedKind,
    fused: Option<FusedConvs>,
    convs: Vec<FoldedConv>,
}

impl Mixed {
    fn forward(&self, x: &Tensor) -> Tensor {
        let heads = self
            .fused
            .as_ref()
            .map(|f| f.forward(x))
            .unwrap_or_default();
        let c = &self.convs;
        let outputs = match self.kind {
            MixedKind::A { .. } => {
                let branch5x5 = c[0].forward(&heads[1]);
                let branch3x3dbl = c[2].forward(&c[1].forward(&heads[2]));
                let branch_pool = c[3].forward(&pool_branch(x, PoolBranch::AverageWithoutPadding));
                vec![
                    heads[0].shallow_clone(),
                    branch5x5,
                    branch3x3dbl,
                    branch_pool,
                ]
            }
            MixedKind::B => {
                let branch3x3 = c[0].forward(x);
                let branch3x3dbl = c[3].forward(&c[2].forward(&c[1].forward(x)));
                let branch_pool = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
                vec![branch3x3, branch3x3dbl, branch_pool]
            }
            MixedKind::C { .. } => {
                let branch7x7 = c[1].forward(&c[0].forward(&heads[1]));
                let dbl = c[5].forward(&c[4].forward(&c[3].forward(&c[2].forward(&heads[2]))));
                let branch_pool = c[6].forward(&pool_branch(x, PoolBranch::AverageWithoutPadding));
                vec![heads[0].shallow_clone(), branch7x7, dbl, branch_pool]
            }
            MixedKind::D => {
                let branch3x3 = c[0].forward(&heads[0]);
                let branch7x7x3 = c[3].forward(&c[2].forward(&c[1].forward(&heads[1])));
                let branch_pool = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
                vec![branch3x3, branch7x7x3, branch_pool]
            }
            MixedKind::E { pool } => {
                let branch3x3 = Tensor::cat(&[c[0].forward(&heads[1]), c[1].forward(&heads[1])], 1);
                let dbl = c[2].forward(&heads[2]);
                let branch3x3dbl = Tensor::cat(&[c[3].forward(&dbl), c[4].forward(&dbl)], 1);
                let branch_pool = c[5].forward(&pool_branch(x, pool));
                vec![
                    heads[0].shallow_clone(),
                    branch3x3,
                    branch3x3dbl,
                    branch_pool,
                ]
            }
        };
        Tensor::cat(&outputs, 1)
    }
}

/// Every `state_dict` entry the network needs, with its shape. BatchNorm's
/// `num_batches_tracked` is optional (not used in eval mode; old files lack it).
pub fn expected_entries() -> BTreeMap<String, Vec<i64>> {
    let mut out = BTreeMap::new();
    for spec in &STEM {
        conv_entries("", spec, &mut out);
    }
    for (name, c, kind) in MIXED {
        for spec in mixed_convs(kind, c) {
            conv_entries(&format!("{name}."), &spec, &mut out);
        }
    }
    out.insert("fc.weight".into(), vec![CLASSES, 2048]);
    out.insert("fc.bias".into(), vec![CLASSES]);
    out
}

/// pytorch-fid's FID Inception v3, ready for inference.
pub struct FidInception {
    stem: Vec<FoldedConv>,
    mixed: Vec<Mixed>,
    fc_weight_t: Tensor,
    fc_bias: Tensor,
    device: Device,
}

impl FidInception {
    /// Builds the network from named tensors (a `state_dict`); every missing, unexpected or
    /// misshapen entry is reported at once.
    pub fn from_tensors(
        named: Vec<(String, Tensor)>,
        source_name: &str,
        device: Device,
    ) -> Result<FidInception, InceptionError> {
        let expected = expected_entries();
        let tensors: HashMap<String, Tensor> = named.into_iter().collect();
        WeightsMismatch::check(
            source_name,
            "pytorch-fid's Inception v3",
            &expected,
            &tensors,
            |name| is_optional_buffer(name, &expected),
        )
        .map_err(InceptionError::Mismatch)?;
        let _guard = tch::no_grad_guard();
        let stem = STEM
            .iter()
            .map(|spec| FoldedConv::fold(&tensors, "", spec, device))
            .collect();
        let mixed = MIXED
            .iter()
            .map(|&(name, c, kind)| {
                let prefix = format!("{name}.");
                let mut convs: Vec<FoldedConv> = mixed_convs(kind, c)
                    .iter()
                    .map(|spec| FoldedConv::fold(&tensors, &prefix, spec, device))
                    .collect();
                let rest = convs.split_off(fused_count(kind));
                let fused = (!convs.is_empty()).then(|| FusedConvs::new(convs));
                Mixed {
                    kind,
                    fused,
                    convs: rest,
                }
            })
            .collect();
        let fc_weight_t = tensors["fc.weight"]
            .to_kind(Kind::Float)
            .to_device(device)
            .transpose(0, 1)
            .contiguous();
        let fc_bias = tensors["fc.bias"].to_kind(Kind::Float).to_device(device);
        Ok(FidInception {
            stem,
            mixed,
            fc_weight_t,
            fc_bias,
            device,
        })
    }

    /// Reads `path` (see [`load_inception_weights`]) and builds the network on `device`.
    pub fn load(path: &Utf8Path, device: Device) -> Result<FidInception, InceptionError> {
        Self::from_tensors(load_inception_weights(path)?, path.as_str(), device)
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// pytorch-fid's `InceptionV3([blocks...])` forward on `x` (`[N, 3, H, W]` float in [0, 1]):
    /// resize to 299, `2x - 1`, then the outputs of blocks `0..=last` (after each block's
    /// pooling; block 3 is `[N, 2048, 1, 1]`).
    pub fn forward(&self, x: &Tensor, last: usize) -> Vec<Tensor> {
        // Inference mode where libtorch allows it, no gradients in any case.
        let _guard = (tch::no_grad_guard(), crate::accel::InferenceMode::new());
        let x = x.to_device(self.device).to_kind(Kind::Float);
        let x = x.upsample_bilinear2d([INPUT_SIZE, INPUT_SIZE], false, None, None);
        let x = channels_last(&(x * 2.0 - 1.0));
        self.blocks(&x, last)
    }

    fn blocks(&self, x: &Tensor, last: usize) -> Vec<Tensor> {
        let mut outputs = Vec::with_capacity(last + 1);
        let s = &self.stem;
        let x = s[2].forward(&s[1].forward(&s[0].forward(x)));
        let x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        outputs.push(x.shallow_clone());
        if last == 0 {
            return outputs;
        }
        let x = s[4].forward(&s[3].forward(&x));
        let x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        outputs.push(x.shallow_clone());
        if last == 1 {
            return outputs;
        }
        let x = self.mixed[..8].iter().fold(x, |x, block| block.forward(&x));
        outputs.push(x.shallow_clone());
        if last == 2 {
            return outputs;
        }
        let x = self.mixed[8..].iter().fold(x, |x, block| block.forward(&x));
        outputs.push(x.adaptive_avg_pool2d([1, 1]));
        outputs
    }

    /// pytorch-fid's features of u8 images `[N, 3, H, W]` (as `get_activations` computes them
    /// from `ToTensor()` input): `[N, dims]` f32.
    pub fn fid_features(&self, images: &Tensor, dims: i64) -> Result<Tensor, InceptionError> {
        let block = block_of_dims(dims)?;
        // Inference mode where libtorch allows it, no gradients in any case.
        let _guard = (tch::no_grad_guard(), crate::accel::InferenceMode::new());
        let x = images.to_device(self.device).to_kind(Kind::Float) / 255.0;
        let output = self
            .forward(&x, block)
            .pop()
            .unwrap_or_else(|| Tensor::zeros([0], (Kind::Float, self.device)));
        Ok(output
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .contiguous())
    }

    /// torch-fidelity's `logits_unbiased` of u8 images `[N, 3, H, W]`: `[N, 1008]` f32.
    pub fn logits_unbiased(&self, images: &Tensor) -> Tensor {
        // Inference mode where libtorch allows it, no gradients in any case.
        let _guard = (tch::no_grad_guard(), crate::accel::InferenceMode::new());
        let x = images.to_device(self.device).to_kind(Kind::Float);
        let x = resize_like_tensorflow1(&x, INPUT_SIZE, INPUT_SIZE);
        let x = channels_last(&((x - 128.0) / 128.0));
        let pooled = self
            .blocks(&x, 3)
            .pop()
            .unwrap_or_else(|| Tensor::zeros([0], (Kind::Float, self.device)));
        pooled.flatten(1, -1).mm(&self.fc_weight_t)
    }

    /// The 1008 logits with the fc bias, as torchvision's classifier head gives them (from
    /// pytorch-fid's input pipeline).
    pub fn logits(&self, images: &Tensor) -> Result<Tensor, InceptionError> {
        let features = self.fid_features(images, 2048)?;
        Ok(features.mm(&self.fc_weight_t) + &self.fc_bias)
    }
}

/// `num_batches_tracked` of a BatchNorm the network has: present in newer files, unused.
fn is_optional_buffer(name: &str, expected: &BTreeMap<String, Vec<i64>>) -> bool {
    name.strip_suffix(".num_batches_tracked")
        .is_some_and(|bn| expected.contains_key(&format!("{bn}.running_mean")))
}

/// torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x(align_corners=False)` ("slow"
/// method, bit-exact with TensorFlow 1.x on the CPU): source coordinate = f32(i) x f32(in/out),
/// its floor and the next pixel (clamped to the edge), interpolated as `a + (b - a) * d` in f32.
pub fn resize_like_tensorflow1(x: &Tensor, out_h: i64, out_w: i64) -> Tensor {
    let size = x.size();
    let (in_h, in_w) = (size[2], size[3]);
    let device = x.device();
    let grid = |out: i64, input: i64| {
        let scale = Tensor::from(input as f64 / out as f64)
            .to_kind(Kind::Float)
            .to_device(device);
        let coordinate = Tensor::arange(out, (Kind::Float, device)) * scale;
        let lo = coordinate.to_kind(Kind::Int64);
        let hi = (&lo + 1).clamp_max(input - 1);
        let delta = &coordinate - lo.to_kind(Kind::Float);
        (lo, hi, delta)
    };
    let (y_lo, y_hi, dy) = grid(out_h, in_h);
    let (x_lo, x_hi, dx) = grid(out_w, in_w);
    let rows_lo = x.index_select(2, &y_lo);
    let rows_hi = x.index_select(2, &y_hi);
    let (in_00, in_01) = (
        rows_lo.index_select(3, &x_lo),
        rows_lo.index_select(3, &x_hi),
    );
    let (in_10, in_11) = (
        rows_hi.index_select(3, &x_lo),
        rows_hi.index_select(3, &x_hi),
    );
    let dx = dx.view([1, 1, 1, out_w]);
    let in_0 = &in_00 + (&in_01 - &in_00) * &dx;
    let in_1 = &in_10 + (&in_11 - &in_10) * &dx;
    &in_0 + (&in_1 - &in_0) * dy.view([1, 1, out_h, 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::random_weights;

    #[test]
    fn expected_entries_count_matches_torchvision() {
        // torchvision's Inception3(num_classes=1008, aux_logits=False) has 94 BasicConv2d
        // modules (5 tensors each without num_batches_tracked) plus fc.weight and fc.bias.
        assert_eq!(expected_entries().len(), 94 * 5 + 2);
    }

    #[test]
    fn forward_gives_pytorch_fid_block_shapes() {
        let model = FidInception::from_tensors(random_weights(1), "random", Device::Cpu).unwrap();
        let images = Tensor::randint(256, [2, 3, 32, 40], (Kind::Uint8, Device::Cpu));
        let blocks = model.forward(&(images.to_kind(Kind::Float) / 255.0), 3);
        let shapes: Vec<Vec<i64>> = blocks.iter().map(|b| b.size()).collect();
        assert_eq!(
            shapes,
            vec![
                vec![2, 64, 73, 73],
                vec![2, 192, 35, 35],
                vec![2, 768, 17, 17],
                vec![2, 2048, 1, 1]
            ]
        );
        assert_eq!(
            model.fid_features(&images, 192).unwrap().size(),
            vec![2, 192]
        );
        assert_eq!(model.logits_unbiased(&images).size(), vec![2, CLASSES]);
        assert!(matches!(
            model.fid_features(&images, 100),
            Err(InceptionError::Dims(100))
        ));
    }

    #[test]
    fn wrong_weights_list_missing_unexpected_and_misshapen_names() {
        let mut weights = random_weights(2);
        weights.retain(|(name, _)| name != "Mixed_6b.branch1x1.conv.weight");
        weights.push((
            "features.0.weight".into(),
            Tensor::zeros([3], (Kind::Float, Device::Cpu)),
        ));
        weights.push((
            "Mixed_5b.branch1x1.bn.num_batches_tracked".into(),
            Tensor::from(0i64),
        ));
        for (name, tensor) in weights.iter_mut() {
            if name == "fc.bias" {
                *tensor = Tensor::zeros([1000], (Kind::Float, Device::Cpu));
            }
        }
        let Err(err) = FidInception::from_tensors(weights, "w.pth", Device::Cpu) else {
            panic!("accepted wrong weights")
        };
        let text = err.to_string();
        assert!(
            text.contains("missing (1): Mixed_6b.branch1x1.conv.weight"),
            "{text}"
        );
        assert!(text.contains("unexpected (1): features.0.weight"), "{text}");
        assert!(
            text.contains("fc.bias is [1000], pytorch-fid's Inception v3 has [1008]"),
            "{text}"
        );
        assert!(
            text.contains(WEIGHTS_FILE),
            "the hint names the right file: {text}"
        );
        assert!(!text.contains("num_batches_tracked"), "{text}");
    }

    #[test]
    fn tensorflow_resize_of_the_same_size_is_the_identity_and_upsamples_by_repeating_rows() {
        let x = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([1, 1, 3, 4]);
        assert_eq!(resize_like_tensorflow1(&x, 3, 4), x);
        let up = resize_like_tensorflow1(&x, 6, 4);
        // Row 1 of 6 sits at source row 0.5: halfway between rows 0 and 1.
        assert_eq!(
            Vec::<f32>::try_from(up.get(0).get(0).get(1)).unwrap(),
            vec![2.0, 3.0, 4.0, 5.0]
        );
        // The last rows clamp to the edge.
        assert_eq!(up.get(0).get(0).get(5), x.get(0).get(0).get(2));
    }
}
