//! The course's pretrained face UNet (`hw2_data/face/UNet.pt`, 2023): rosinality's
//! denoising-diffusion-pytorch UNet with its modules written out one by one, named exactly as
//! that `state_dict` (427 entries at full size).
//!
//! `down1` (3x3 conv to the base width), then six levels of width base x [1, 1, 2, 2, 4, 4]:
//! two ResBlocks each (`down2, down3 | down5, down6 | ...`), a stride-2 conv (`down4`, `down7`,
//! ...) after every level but the last, self-attention after the ResBlocks of level 4 (16x16 at
//! 256x256); `mid1` (with attention) and `mid2`; the up path runs the levels backwards with three
//! ResBlocks each on `[x, skip]` (every down module's output is a skip, popped last-in first-out)
//! and nearest x2 upsampling + 3x3 conv (`up4`, `up8`, ...) between levels; head `out` (GroupNorm,
//! SiLU, 3x3 conv). The time embedding `time` is sinusoidal (width = base), Linear to 4 x base,
//! SiLU, Linear. The network takes the raw integer timestep as a float.
//!
//! The base width is configurable (with the GroupNorm group count), so tests run the same code
//! small; the course's network is [`FaceUnetConfig::COURSE`].

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::blocks::residual::ResBlockSpec;
use super::blocks::{
    Conv2d, ConvSpec, GroupNorm, Init, Linear, Module, Nonlinearity, ResBlock, SelfAttention,
    SinusoidalEmbedding,
};
use super::layers::ModelError;
use super::summary::ModuleTree;

/// Width multipliers of the six levels.
const MULTIPLIERS: [i64; 6] = [1, 1, 2, 2, 4, 4];
/// The level whose ResBlocks carry self-attention (16x16 at 256x256).
const ATTENTION_LEVEL: usize = 4;
/// ResBlocks per level on the way down (the up path has one more).
const RES_PER_LEVEL: usize = 2;
const EPS: f64 = 1e-5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaceUnetConfig {
    /// Width of the first level (128 in the course's network).
    pub base_channels: i64,
    /// GroupNorm groups (32); must divide the base width.
    pub groups: i64,
}

impl FaceUnetConfig {
    /// The course's network.
    pub const COURSE: FaceUnetConfig = FaceUnetConfig {
        base_channels: 128,
        groups: 32,
    };

    /// The smallest image side (five halvings).
    pub const MIN_IMAGE_SIZE: i64 = 32;
}

enum Part {
    Res {
        block: Box<ResBlock>,
        // Boxed like the block: the variants `Down` and `Up` hold one conv.
        attention: Option<Box<SelfAttention>>,
    },
    /// Stride-2 3x3 conv (`N.0`).
    Down(Conv2d),
    /// Nearest x2 then 3x3 conv (`N.1`).
    Up(Conv2d),
}

struct Named {
    name: String,
    part: Part,
}

impl Named {
    fn forward(&self, x: &Tensor, temb: &Tensor) -> Tensor {
        match &self.part {
            Part::Res { block, attention } => {
                let h = block.forward_with_time(x, temb, false);
                match attention {
                    Some(a) => a.forward_t(&h, false),
                    None => h,
                }
            }
            Part::Down(conv) => conv.forward_t(x, false),
            Part::Up(conv) => {
                let size = x.size();
                conv.forward_t(
                    &x.upsample_nearest2d([size[2] * 2, size[3] * 2], None::<f64>, None::<f64>),
                    false,
                )
            }
        }
    }

    fn tree(&self) -> ModuleTree {
        let children = match &self.part {
            Part::Res { block, attention } => {
                let mut c = vec![("resblocks".to_owned(), block.tree())];
                if let Some(a) = attention {
                    c.push(("attention".into(), a.tree()));
                }
                c
            }
            Part::Down(conv) => vec![("0".into(), conv.tree())],
            Part::Up(conv) => vec![
                (
                    "0".into(),
                    ModuleTree::leaf("Upsample(scale_factor=2.0, mode='nearest')"),
                ),
                ("1".into(), conv.tree()),
            ],
        };
        ModuleTree::node(
            match self.part {
                Part::Res { .. } => "ResBlockWithAttention",
                Part::Down(_) => "Downsample",
                Part::Up(_) => "Upsample",
            },
            children,
        )
    }
}

pub struct FaceUnet {
    pub config: FaceUnetConfig,
    embedding: SinusoidalEmbedding,
    time1: Linear,
    time3: Linear,
    down1: Conv2d,
    down: Vec<Named>,
    mid: Vec<Named>,
    up: Vec<Named>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
}

impl FaceUnet {
    pub fn new(root: &nn::Path, config: FaceUnetConfig) -> Result<Self, ModelError> {
        let base = config.base_channels;
        if config.groups < 1 || base % config.groups != 0 {
            return Err(ModelError::Unsupported {
                what: "face UNet base_channels",
                found: base,
                expected: "a multiple of `groups`",
            });
        }
        let time_dim = 4 * base;
        let res = |name: &str, ci: i64, co: i64, attention: bool| {
            let path = root / name;
            let spec = ResBlockSpec {
                in_channels: ci,
                out_channels: co,
                time_dim,
                groups: config.groups,
                eps: EPS,
                dropout: 0.0,
            };
            let block = Box::new(ResBlock::new(&(&path / "resblocks"), spec));
            let attention = attention.then(|| {
                Box::new(SelfAttention::new(
                    &(&path / "attention"),
                    co,
                    config.groups,
                    EPS,
                ))
            });
            Named {
                name: name.to_owned(),
                part: Part::Res { block, attention },
            }
        };
        let conv3 = |path: nn::Path, c: i64, stride: i64| {
            Conv2d::new(&path, ConvSpec::new(c, c, 3).stride(stride).padding(1))
        };
        let mut counter = 1;
        let mut next = |prefix: &str| {
            counter += 1;
            format!("{prefix}{counter}")
        };
        // Channels of every skip tensor, in push order.
        let mut skips = vec![base];
        let mut down = Vec::new();
        let mut width = base;
        for (level, mult) in MULTIPLIERS.iter().enumerate() {
            let co = base * mult;
            for _ in 0..RES_PER_LEVEL {
                down.push(res(&next("down"), width, co, level == ATTENTION_LEVEL));
                width = co;
                skips.push(width);
            }
            if level + 1 < MULTIPLIERS.len() {
                let name = next("down");
                down.push(Named {
                    part: Part::Down(conv3(root / name.as_str() / "0", width, 2)),
                    name,
                });
                skips.push(width);
            }
        }
        let mid = vec![
            res("mid1", width, width, true),
            res("mid2", width, width, false),
        ];
        let mut counter = 0;
        let mut next = |prefix: &str| {
            counter += 1;
            format!("{prefix}{counter}")
        };
        let mut up = Vec::new();
        for (level, mult) in MULTIPLIERS.iter().enumerate().rev() {
            let co = base * mult;
            for _ in 0..=RES_PER_LEVEL {
                let skip = skips.pop().unwrap_or(0);
                up.push(res(&next("up"), width + skip, co, level == ATTENTION_LEVEL));
                width = co;
            }
            if level > 0 {
                let name = next("up");
                up.push(Named {
                    part: Part::Up(conv3(root / name.as_str() / "1", width, 1)),
                    name,
                });
            }
        }
        Ok(FaceUnet {
            config,
            embedding: SinusoidalEmbedding::new(&(root / "time" / "0"), base),
            time1: Linear::new(&(root / "time" / "1"), base, time_dim, Init::Pytorch),
            time3: Linear::new(&(root / "time" / "3"), time_dim, time_dim, Init::Pytorch),
            down1: Conv2d::new(&(root / "down1"), ConvSpec::new(3, base, 3).padding(1)),
            down,
            mid,
            up,
            out_norm: GroupNorm::new(&(root / "out" / "0"), config.groups, base, EPS),
            out_conv: Conv2d::new(&(root / "out" / "2"), ConvSpec::new(base, 3, 3).padding(1)),
        })
    }

    /// Predicted noise of `x` `[b, 3, S, S]` (S a multiple of 32) at raw timesteps `t` `[b]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Tensor {
        let silu = Nonlinearity::Silu;
        let temb = self.time3.forward_t(
            &silu.apply(
                &self
                    .time1
                    .forward_t(&self.embedding.forward_t(t, false), false),
            ),
            false,
        );
        let mut h = self.down1.forward_t(x, false);
        let mut skips = vec![h.shallow_clone()];
        for module in &self.down {
            h = module.forward(&h, &temb);
            skips.push(h.shallow_clone());
        }
        for module in &self.mid {
            h = module.forward(&h, &temb);
        }
        for module in &self.up {
            h = match module.part {
                Part::Res { .. } => match skips.pop() {
                    Some(skip) => module.forward(&Tensor::cat(&[&h, &skip], 1), &temb),
                    None => module.forward(&h, &temb),
                },
                _ => module.forward(&h, &temb),
            };
        }
        self.out_conv
            .forward_t(&silu.apply(&self.out_norm.forward_t(&h, false)), false)
    }

    /// The model as PyTorch prints it.
    pub fn tree(&self) -> ModuleTree {
        let time = ModuleTree::node(
            "Sequential",
            vec![
                ("0".into(), self.embedding.tree()),
                ("1".into(), self.time1.tree()),
                ("2".into(), Nonlinearity::Silu.tree()),
                ("3".into(), self.time3.tree()),
            ],
        );
        let mut children = vec![
            ("time".to_owned(), time),
            ("down1".into(), self.down1.tree()),
        ];
        children.extend(
            self.down
                .iter()
                .chain(&self.mid)
                .chain(&self.up)
                .map(|m| (m.name.clone(), m.tree())),
        );
        let out = ModuleTree::node(
            "Sequential",
            vec![
                ("0".into(), self.out_norm.tree()),
                ("1".into(), Nonlinearity::Silu.tree()),
                ("2".into(), self.out_conv.tree()),
            ],
        );
        children.push(("out".into(), out));
        ModuleTree::node("UNet", children)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn the_course_network_has_427_tensors_and_a_small_one_runs() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = FaceUnet::new(&vs.root(), FaceUnetConfig::COURSE).unwrap();
        let vars = vs.variables();
        assert_eq!(vars.len(), 427);
        let count: i64 = vars
            .iter()
            .filter(|(n, _)| n.as_str() != "time.0.inv_freq")
            .map(|(_, t)| t.numel() as i64)
            .sum();
        assert_eq!(count, 113_673_219);
        assert_eq!(vars["up7.resblocks.conv1.weight"].size(), [512, 768, 3, 3]);
        assert_eq!(vars["up20.1.weight"].size(), [128, 128, 3, 3]);
        assert_eq!(vars["down16.0.weight"].size(), [512, 512, 3, 3]);
        let small = nn::VarStore::new(Device::Cpu);
        let net = FaceUnet::new(
            &small.root(),
            FaceUnetConfig {
                base_channels: 8,
                groups: 4,
            },
        )
        .unwrap();
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(
            net.forward(&x, &Tensor::from_slice(&[981.0f32])).size(),
            [1, 3, 32, 32]
        );
    }
}
