//! The built-in backends, one per file.

pub mod github;
pub mod http;
pub mod local;
pub mod s3;
