//! The content-addressed stage cache: keys ([`key`]), entries and their manifests ([`store`],
//! [`manifest`]), and content hashes of files outside the cache ([`file_hash`]).

pub mod file_hash;
pub mod key;
pub mod manifest;
pub mod store;

pub use key::{CacheKey, InputKey, KeyMaterial};
pub use manifest::Manifest;
pub use store::{Cache, CacheError, Staging};
