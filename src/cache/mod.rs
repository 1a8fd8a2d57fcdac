//! The content-addressed stage cache: keys ([`key`]), entries and their manifests ([`store`],
//! [`manifest`]), locks that also work on a shared filesystem ([`lock`]), and content hashes of
//! files ([`file_hash`]).

pub mod file_hash;
pub mod key;
pub mod lock;
pub mod manifest;
pub mod store;

pub use key::{CacheKey, InputKey, KeyMaterial};
pub use manifest::Manifest;
pub use store::{Cache, CacheError, Lookup, Staging};
