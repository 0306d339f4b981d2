//! `cargo record-test`: see `cargo record-test --help`.

fn main() {
    std::process::exit(cargo_chaos::record_test::main_with_args(
        std::env::args_os().collect(),
    ));
}
