//! `cargo chaos`: see `cargo chaos --help`.

fn main() {
    std::process::exit(cargo_chaos::chaos::main_with_args(
        std::env::args_os().collect(),
    ));
}
