//! Integration tests of the packer: one binary, a module per area (see util.rs for the
//! synthetic recordings and servers.rs for the real nginx and S3 servers they run against).

mod cache;
mod dedup;
mod errors;
mod frames;
mod fuzz;
mod fuzz_checks;
mod http;
mod malicious;
mod partial;
mod recorded;
mod roundtrip;
mod s3;
mod secrets;
mod servers;
mod util;
