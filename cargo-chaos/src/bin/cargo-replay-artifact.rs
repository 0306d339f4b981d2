//! `cargo replay-artifact`: see `cargo replay-artifact --help`.

fn main() {
    std::process::exit(cargo_chaos::replay_artifact::main_with_args(
        std::env::args_os().collect(),
    ));
}
