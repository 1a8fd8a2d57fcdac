//! Networks as data: a student's own network, declared as the text `print(model)` gave them
//! ([`printout`]) or in TOML ([`toml_form`]), held as a tree of named modules ([`spec`]).
//!
//! From the tree alone, with arithmetic and no libtorch, hwrun prints the network exactly as
//! PyTorch 2.13 does, lists its `state_dict` and parameter count, and checks the shapes of a
//! forward pass ([`shape`]); that is what `hwrun net` shows. The forward pass is the children
//! in order, with the flattens and unflattens that the printout cannot show inferred from the
//! shapes.
//!
//! [`build`] makes the libtorch module of a tree, for the worker process only.
//!
//! Layers are described by PyTorch's constructor signatures ([`vocabulary`]), so any argument
//! PyTorch accepts by position or keyword is accepted here too ([`call`]).

pub mod build;
pub mod call;
pub mod error;
pub mod printout;
pub mod shape;
pub mod spec;
pub mod toml_form;
pub mod vocabulary;

use std::collections::BTreeMap;

pub use error::{ErrorKind, Location, NetworkError};
pub use spec::{Entry, Layer, Module, Network};

/// A network read from a description, with the line and column of each module (by its dotted
/// path; the root is `""`) for errors found later, such as shape mismatches.
#[derive(Debug, Clone)]
pub struct Described {
    pub network: Network,
    pub locations: BTreeMap<String, Location>,
}
