//! Turns `syscalls.toml` into `$OUT_DIR/syscall_table.rs` (included by
//! `src/syscalls/table.rs`) and `$OUT_DIR/syscall_libc_check.rs` (included by
//! `tests/syscall_numbers.rs`).
//!
//! The generator is in three parts, over the recorder's own model types
//! (`src/syscalls/model.rs`, compiled into this script too, so the table's types are
//! defined once):
//!
//! - `build/schema.rs`: the file's shape (rows as written, size strings);
//! - `build/checks.rs`: what the rows mean, checked into the model types; every
//!   malformed row is reported (all of them, not only the first) and fails the build;
//! - `build/emit.rs`: the generated Rust.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "build/checks.rs"]
mod checks;
#[path = "build/emit.rs"]
mod emit;
#[path = "src/syscalls/model.rs"]
mod model;
#[path = "build/schema.rs"]
mod schema;
#[path = "src/syscallbuf/abi.rs"]
#[allow(dead_code)]
mod syscallbuf_abi;

use model::Class;

const TABLE_FILE: &str = "syscalls.toml";

/// Writes `content` to `path` unless the file already holds exactly that.
fn write_if_changed(path: &Path, content: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return;
    }
    if let Err(e) = std::fs::write(path, content) {
        fail(&[format!("cannot write {}: {e}", path.display())]);
    }
}

fn fail(errors: &[String]) -> ! {
    eprintln!(
        "error: {TABLE_FILE} is invalid ({} problem(s)):",
        errors.len()
    );
    for e in errors {
        eprintln!("  - {e}");
    }
    std::process::exit(1);
}

fn main() {
    for path in [
        TABLE_FILE,
        "build.rs",
        "build/schema.rs",
        "build/checks.rs",
        "build/emit.rs",
        "src/syscalls/model.rs",
        "src/syscallbuf/abi.rs",
        "src/syscallbuf/preload.c",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }

    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let source_path = manifest_dir.join(TABLE_FILE);
    let source = match std::fs::read_to_string(&source_path) {
        Ok(s) => s,
        Err(e) => fail(&[format!("cannot read {}: {e}", source_path.display())]),
    };
    let file: schema::TableFile = match toml::from_str(&source) {
        Ok(f) => f,
        Err(e) => fail(&[format!("not valid: {e}")]),
    };

    let mut errors = checks::Errors::default();
    let syscalls = checks::check_syscalls(file.syscall, &mut errors);
    let ioctls = checks::check_requests("ioctl", file.ioctl, &mut errors);
    let fcntls = checks::check_requests("fcntl", file.fcntl, &mut errors);
    let prctls = checks::check_requests("prctl", file.prctl, &mut errors);
    let arch_prctls = checks::check_requests("arch_prctl", file.arch_prctl, &mut errors);
    let prctl_mms = checks::check_requests("prctl_mm", file.prctl_mm, &mut errors);
    let keyctls = checks::check_requests("keyctl", file.keyctl, &mut errors);
    if !errors.0.is_empty() {
        fail(&errors.0);
    }

    let tables: [emit::RequestTable<'_>; 6] = [
        (
            "IOCTLS",
            "ioctl_request",
            "The ioctl requests the recorder knows",
            &ioctls,
        ),
        (
            "FCNTLS",
            "fcntl_command",
            "The fcntl commands the recorder knows",
            &fcntls,
        ),
        (
            "PRCTLS",
            "prctl_option",
            "The prctl options the recorder knows",
            &prctls,
        ),
        (
            "ARCH_PRCTLS",
            "arch_prctl_code",
            "The arch_prctl codes the recorder knows",
            &arch_prctls,
        ),
        (
            "PRCTL_MMS",
            "prctl_mm_option",
            "The PR_SET_MM sub-options (prctl's second argument) the recorder knows",
            &prctl_mms,
        ),
        (
            "KEYCTLS",
            "keyctl_operation",
            "The keyctl operations (its first argument) the recorder knows",
            &keyctls,
        ),
    ];

    // A summary in the build log (`cargo build -vv`), handy when editing the table.
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for sc in &syscalls {
        let class = match sc.desc.class {
            Class::Recorded => "recorded",
            Class::Executed => "executed",
            Class::Refused { .. } => "refused",
            Class::Unsupported { .. } => "unsupported",
        };
        *per_class.entry(class).or_default() += 1;
    }
    eprintln!("{TABLE_FILE}: {} syscalls {per_class:?}", syscalls.len());

    write_if_changed(
        &out_dir.join("syscall_table.rs"),
        &emit::generate_table(&syscalls, &tables),
    );
    write_if_changed(
        &out_dir.join("syscall_libc_check.rs"),
        &emit::generate_libc_check(&syscalls, &tables),
    );
    build_preload_library(&manifest_dir, &out_dir);
}

/// Compiles the syscall-buffering preload library (`src/syscallbuf/preload.c`) into
/// `$OUT_DIR/libchaos_syscallbuf.so`, which the recorder embeds (see `src/syscallbuf.rs`).
/// C, not a Rust cdylib: it must define libc's own symbol names for LD_PRELOAD, run
/// before and under any runtime (no std, no TLS destructors, no allocator), and keep
/// every register and stack effect simple enough to reason about at replay.
fn build_preload_library(manifest_dir: &Path, out_dir: &Path) {
    use syscallbuf_abi as abi;
    let source = manifest_dir.join("src/syscallbuf/preload.c");
    let output = out_dir.join("libchaos_syscallbuf.so");
    let mut cmd = cc::Build::new().get_compiler().to_command();
    cmd.args([
        "-O2",
        "-fPIC",
        "-shared",
        "-fno-stack-protector",
        "-mno-red-zone",
        "-ftls-model=initial-exec",
        "-Wall",
        "-Wno-missing-attributes",
        "-Werror",
        // `recorder::syscallbuf::SONAME`: gdb finds the archive's copy by it.
        "-Wl,-soname,libchaos_syscallbuf.so",
    ]);
    for (name, value) in [
        ("CHAOS_SB_ENTRY", abi::ENTRY),
        ("CHAOS_SB_INIT", abi::INIT_SYSCALL),
        ("CHAOS_SB_FLUSH", abi::FLUSH_SYSCALL),
        ("CHAOS_SB_SIZE", abi::BUFFER_SIZE),
        ("CHAOS_SB_MAX_RECORD", abi::MAX_RECORD),
        ("CHAOS_SB_MAX_IO", abi::MAX_IO),
        ("CHAOS_SB_MARK", abi::MARK),
        ("CHAOS_SB_QUIET", abi::QUIET_ENTRY),
        ("CHAOS_SB_DESCHED_LAZY", abi::DESCHED_LAZY),
        ("CHAOS_SB_ASK", abi::ASK_MARK),
    ] {
        cmd.arg(format!("-D{name}={value:#x}"));
    }
    cmd.arg(format!("-DCHAOS_SB_DESCHED_RET=({}L)", abi::DESCHED_RET));
    cmd.arg("-o").arg(&output).arg(&source);
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "error: compiling {} failed:\n{}",
                source.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!(
                "error: cannot run the C compiler for {}: {e}",
                source.display()
            );
            std::process::exit(1);
        }
    }
}
