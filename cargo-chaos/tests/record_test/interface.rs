//! Issue 18 item 1: the command line at nextest's level. Cargo's build flags reach
//! cargo, `--version` works on every binary, usage errors exit 2 everywhere, counts of
//! zero are refused, and runs in parallel are `-j/--test-threads` (old `--jobs` kept).

use super::common::{example_manifest, Run, Sandbox};

#[test]
fn every_binary_has_version() {
    let sb = Sandbox::new();
    let want = format!(" {}", env!("CARGO_PKG_VERSION"));
    for run in [
        sb.record_test(["--version"]),
        sb.replay(["--version"]),
        Run::of({
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-chaos"));
            c.args(["chaos", "--version"]);
            c
        }),
    ] {
        run.expect_status(0);
        assert!(
            run.stdout_str().trim_end().ends_with(&want),
            "{}",
            run.show()
        );
    }
}

#[test]
fn usage_errors_exit_2_everywhere() {
    let sb = Sandbox::new();
    for run in [
        sb.record_test(["--no-such-flag"]),
        sb.replay(["--no-such-flag", "x.chaos.tar.zst"]),
        sb.replay(Vec::<&str>::new()),
        Run::of({
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-chaos"));
            c.args(["chaos", "replay", "--no-such-flag"]);
            c
        }),
    ] {
        run.expect_status(2);
        assert!(run.stderr_str().contains("Usage:"), "{}", run.show());
    }
}

/// A count of zero would run nothing and pass: refused before anything is built.
#[test]
fn counts_of_zero_are_refused() {
    let sb = Sandbox::new();
    for (flag, value) in [
        ("--max-runs", "0"),
        ("--max-duration", "0s"),
        ("--test-timeout", "0"),
        ("--jobs", "0"),
        ("--test-threads", "0"),
        ("-j", "0"),
        ("--build-jobs", "0"),
    ] {
        let run = sb.record_test(["--until-fail", flag, value]);
        run.expect_status(2);
        // `--jobs` and `-j` are spellings of `--test-threads`.
        let named = if flag == "--jobs" || flag == "-j" {
            "--test-threads"
        } else {
            flag
        };
        assert!(
            run.stderr_str().contains(named) && run.stderr_str().contains("give at least 1")
                || run.stderr_str().contains(named) && run.stderr_str().contains("zero"),
            "the message names {named} and says why\n{}",
            run.show()
        );
        assert!(
            !sb.target().exists(),
            "nothing was built for {flag} {value}"
        );
    }
}

/// Cargo's flags go to the build: a hunt with them passes, and a selection cargo refuses
/// shows cargo's own error.
#[test]
fn cargo_build_flags_pass_through() {
    let sb = Sandbox::new();
    let manifest = example_manifest().display().to_string();
    let target = sb.target().display().to_string();
    let base = ["--manifest-path", &manifest, "--target-dir", &target];
    let mut args = base.to_vec();
    args.extend([
        "--locked",
        "--offline",
        "--lib",
        "-v",
        "--color",
        "never",
        "--build-jobs",
        "1",
        "--test-threads",
        "1",
        "--per-test",
        "always_passes",
    ]);
    let run = sb.record_test(&args);
    run.expect_status(0);
    // `-v` reached cargo: it names what it runs or finds fresh.
    assert!(
        run.stderr_str().contains("Running `") || run.stderr_str().contains("Fresh "),
        "{}",
        run.show()
    );
    assert!(
        !run.stderr_str().contains("\x1b["),
        "--color never\n{}",
        run.show()
    );

    // The old spelling still works.
    let mut args = base.to_vec();
    args.extend([
        "--frozen",
        "--jobs",
        "1",
        "-q",
        "--per-test",
        "always_passes",
    ]);
    sb.record_test(&args).expect_status(0);

    for (flags, cargo_says) in [
        (
            &["--bin", "no-such-bin"][..],
            "no bin target named `no-such-bin`",
        ),
        (&["--example", "nope"][..], "no example target named `nope`"),
        (
            &["--exclude", "x"][..],
            "--exclude can only be used together with --workspace",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend(flags);
        let run = sb.record_test(&args);
        run.expect_status(2);
        assert!(
            run.stderr_str().contains(cargo_says),
            "{flags:?}\n{}",
            run.show()
        );
    }
}
