//! The admin API of the identity service, as its callers see it: the documents it
//! stores (`model`), how custom resources become those documents (`desired`), and a
//! client (`client`) used by the operator and by `idsync admin`.

pub mod client;
pub mod desired;
pub mod model;

pub use client::{AdminClient, ClientError};
pub use model::*;
