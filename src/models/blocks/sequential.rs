//! Named blocks applied in order, like `torch.nn.Sequential` (and like it, printed as
//! `(name): Block(...)` lines).

use tch::Tensor;

use super::Module;
use crate::models::summary::ModuleTree;

#[derive(Default)]
pub struct Sequential {
    blocks: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Appends `block` under `name` (the name its variables were created under).
    pub fn push(&mut self, name: impl Into<String>, block: impl Module + 'static) {
        self.blocks.push((name.into(), Box::new(block)));
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

impl Module for Sequential {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.blocks
            .iter()
            .fold(xs.shallow_clone(), |x, (_, block)| {
                block.forward_t(&x, train)
            })
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::node(
            "Sequential",
            self.blocks
                .iter()
                .map(|(name, block)| (name.clone(), block.tree()))
                .collect(),
        )
    }
}
