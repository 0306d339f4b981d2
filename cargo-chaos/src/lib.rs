//! The cargo subcommands (`cargo chaos`, `cargo record-test`, `cargo replay-artifact`).
//! Only glue: argument parsing, dispatch, rendering and exit codes. The work is done by
//! the `recorder` and `packer` crates.

pub mod archive_cmds;
pub mod captures;
pub mod chaos;
pub mod credentials;
pub mod duration;
pub mod env;
pub mod exit_codes;
pub mod messages;
pub mod output;
pub mod pack_on_failure;
pub mod record_test;
pub mod replay_artifact;
pub mod signals;
pub mod sizes;
