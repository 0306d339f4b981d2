//! Turns `syscalls.toml` into `$OUT_DIR/syscall_table.rs` (included by
//! `src/syscalls/table.rs`) and `$OUT_DIR/syscall_libc_check.rs` (included by
//! `tests/syscall_numbers.rs`).
//!
//! Every malformed row is reported (all of them, not only the first) and fails the build.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const TABLE_FILE: &str = "syscalls.toml";
/// Syscall numbers must stay below this (the lookup array is indexed by number).
const MAX_NR: u64 = 1024;
/// x86_64 system calls take at most six arguments.
const MAX_ARGS: u8 = 6;

/// The errno names a `refused` row may use; each becomes `libc::<NAME>`.
const ERRNO_NAMES: &[&str] = &[
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "ENOMSG",
    "EIDRM",
    "ENODATA",
    "ETIME",
    "EOVERFLOW",
    "EBADFD",
    "EILSEQ",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EDQUOT",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

// ----------------------------------------------------------------------------------------
// The TOML shape
// ----------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    syscall: Vec<SyscallRow>,
    #[serde(default)]
    ioctl: Vec<RequestRow>,
    #[serde(default)]
    fcntl: Vec<RequestRow>,
    #[serde(default)]
    prctl: Vec<RequestRow>,
    #[serde(default)]
    arch_prctl: Vec<RequestRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyscallRow {
    name: String,
    nr: u64,
    class: String,
    errno: Option<String>,
    hint: Option<String>,
    #[serde(default)]
    may_block: bool,
    #[serde(default)]
    untraced: bool,
    #[serde(default)]
    special: bool,
    answer: Option<i64>,
    #[serde(default = "yes")]
    same_result: bool,
    #[serde(default)]
    outputs: Vec<MemArgRow>,
    #[serde(default)]
    inputs: Vec<MemArgRow>,
    #[serde(default)]
    note: String,
    #[serde(default = "yes")]
    libc: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestRow {
    name: String,
    value: u64,
    class: String,
    errno: Option<String>,
    hint: Option<String>,
    #[serde(default)]
    outputs: Vec<MemArgRow>,
    #[serde(default)]
    inputs: Vec<MemArgRow>,
    #[serde(default)]
    note: String,
    #[serde(default = "yes")]
    libc: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemArgRow {
    arg: u8,
    size: String,
    max: Option<String>,
}

fn yes() -> bool {
    true
}

// ----------------------------------------------------------------------------------------
// Validated forms
// ----------------------------------------------------------------------------------------

enum Class {
    Recorded,
    Executed,
    Refused(String),
    Unsupported(String),
}

enum Size {
    Ret,
    Arg(u8),
    Fixed(usize),
    ArgTimes(u8, usize),
    RetTimes(usize),
    CStr,
    SockLen(u8),
    Iovec(u8),
}

struct MemArg {
    arg: u8,
    size: Size,
    max: Option<Size>,
}

struct Syscall {
    name: String,
    nr: u64,
    class: Class,
    may_block: bool,
    untraced: bool,
    special: bool,
    answer: Option<i64>,
    same_result: bool,
    outputs: Vec<MemArg>,
    inputs: Vec<MemArg>,
    note: String,
    libc: bool,
}

struct Request {
    name: String,
    value: u64,
    class: Class,
    outputs: Vec<MemArg>,
    inputs: Vec<MemArg>,
    note: String,
    libc: bool,
}

/// Collects every problem so that one build reports all of them.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, what: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{what}: {msg}"));
    }
}

fn parse_arg_index(s: &str) -> Option<u8> {
    if s.len() != 1 {
        return None;
    }
    let n: u8 = s.parse().ok()?;
    (n < MAX_ARGS).then_some(n)
}

fn parse_count(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&k| k > 0)
}

/// Parses a size string; `Err` says why it is not one.
fn parse_size(s: &str) -> Result<Size, String> {
    let bad = || {
        format!(
            "unknown size {s:?} (expected \"ret\", \"ret*K\", \"argN\", \"argN*K\", \"fixed:K\", \
             \"cstr\", \"socklen:N\" or \"iovec:N\", with N in 0..=5 and K > 0)"
        )
    };
    if s == "ret" {
        return Ok(Size::Ret);
    }
    if s == "cstr" {
        return Ok(Size::CStr);
    }
    if let Some(k) = s.strip_prefix("ret*") {
        return parse_count(k).map(Size::RetTimes).ok_or_else(bad);
    }
    if let Some(k) = s.strip_prefix("fixed:") {
        return parse_count(k).map(Size::Fixed).ok_or_else(bad);
    }
    if let Some(n) = s.strip_prefix("socklen:") {
        return parse_arg_index(n).map(Size::SockLen).ok_or_else(bad);
    }
    if let Some(n) = s.strip_prefix("iovec:") {
        return parse_arg_index(n).map(Size::Iovec).ok_or_else(bad);
    }
    if let Some(rest) = s.strip_prefix("arg") {
        return match rest.split_once('*') {
            None => parse_arg_index(rest).map(Size::Arg).ok_or_else(bad),
            Some((n, k)) => match (parse_arg_index(n), parse_count(k)) {
                (Some(n), Some(k)) => Ok(Size::ArgTimes(n, k)),
                _ => Err(bad()),
            },
        };
    }
    Err(bad())
}

fn check_mem_args(
    what: &str,
    rows: &[MemArgRow],
    output: bool,
    errors: &mut Errors,
) -> Vec<MemArg> {
    let kind = if output { "output" } else { "input" };
    let mut out = Vec::new();
    for row in rows {
        if row.arg >= MAX_ARGS {
            errors.push(
                what,
                format!("{kind} arg = {} (arguments are 0..=5)", row.arg),
            );
            continue;
        }
        let size = match parse_size(&row.size) {
            Ok(size) => size,
            Err(msg) => {
                errors.push(what, format!("{kind} of arg {}: {msg}", row.arg));
                continue;
            }
        };
        let misuse = match (&size, output) {
            (Size::Ret | Size::RetTimes(_), false) => {
                Some("an input cannot depend on the return value")
            }
            (Size::SockLen(_), false) => Some("socklen sizes are for outputs only"),
            (Size::CStr, true) => Some("cstr is for inputs only"),
            _ => None,
        };
        if let Some(msg) = misuse {
            errors.push(
                what,
                format!("{kind} of arg {} with size {:?}: {msg}", row.arg, row.size),
            );
            continue;
        }
        match size {
            Size::Arg(n) | Size::ArgTimes(n, _) | Size::SockLen(n) | Size::Iovec(n)
                if n == row.arg =>
            {
                errors.push(
                    what,
                    format!(
                        "{kind} of arg {}: its size cannot be read from the pointer itself",
                        row.arg
                    ),
                );
                continue;
            }
            _ => {}
        }
        let max = match (&row.max, &size) {
            (None, _) => None,
            (Some(m), Size::Ret | Size::RetTimes(_)) if output => match parse_size(m) {
                Ok(max @ (Size::Arg(n) | Size::ArgTimes(n, _))) if n != row.arg => Some(max),
                Ok(max @ Size::Fixed(_)) => Some(max),
                _ => {
                    errors.push(
                        what,
                        format!(
                            "{kind} of arg {}: max {m:?} must be \"argN\", \"argN*K\" or \"fixed:K\" \
                             (N another argument)",
                            row.arg
                        ),
                    );
                    continue;
                }
            },
            (Some(_), _) => {
                errors.push(
                    what,
                    format!(
                        "{kind} of arg {}: max is only for outputs sized by the result (\"ret\", \"ret*K\")",
                        row.arg
                    ),
                );
                continue;
            }
        };
        out.push(MemArg {
            arg: row.arg,
            size,
            max,
        });
    }
    out
}

fn check_class(
    what: &str,
    class: &str,
    errno: &Option<String>,
    hint: &Option<String>,
    errors: &mut Errors,
) -> Option<Class> {
    let class = match class {
        "recorded" => Class::Recorded,
        "executed" => Class::Executed,
        "refused" => match errno {
            None => {
                errors.push(
                    what,
                    "class \"refused\" needs an errno (e.g. errno = \"ENOSYS\")",
                );
                return None;
            }
            Some(e) if !ERRNO_NAMES.contains(&e.as_str()) => {
                errors.push(
                    what,
                    format!(
                        "unknown errno {e:?} (add it to ERRNO_NAMES in build.rs if libc \
                             has it)"
                    ),
                );
                return None;
            }
            Some(e) => Class::Refused(e.clone()),
        },
        "unsupported" => match hint {
            Some(h) if !h.trim().is_empty() => Class::Unsupported(h.clone()),
            _ => {
                errors.push(
                    what,
                    "class \"unsupported\" needs a non-empty hint telling the user what to do",
                );
                return None;
            }
        },
        other => {
            errors.push(
                what,
                format!(
                    "unknown class {other:?} (expected recorded, executed, refused or unsupported)"
                ),
            );
            return None;
        }
    };
    if errno.is_some() && !matches!(class, Class::Refused(_)) {
        errors.push(what, "errno is only meaningful with class \"refused\"");
    }
    if hint.is_some() && !matches!(class, Class::Unsupported(_)) {
        errors.push(what, "hint is only meaningful with class \"unsupported\"");
    }
    Some(class)
}

fn valid_ident(name: &str, upper: bool) -> bool {
    let mut bytes = name.bytes();
    let first_ok = match bytes.next() {
        Some(b) => {
            b == b'_'
                || if upper {
                    b.is_ascii_uppercase()
                } else {
                    b.is_ascii_lowercase()
                }
        }
        None => false,
    };
    first_ok
        && name.bytes().all(|b| {
            b == b'_'
                || b.is_ascii_digit()
                || if upper {
                    b.is_ascii_uppercase()
                } else {
                    b.is_ascii_lowercase()
                }
        })
}

fn check_syscalls(rows: Vec<SyscallRow>, errors: &mut Errors) -> Vec<Syscall> {
    let mut by_name: HashMap<String, u64> = HashMap::new();
    let mut by_nr: HashMap<u64, String> = HashMap::new();
    let mut out = Vec::new();
    for row in rows {
        let what = format!("[[syscall]] {:?} (nr {})", row.name, row.nr);
        let what = what.as_str();
        if !valid_ident(&row.name, false) {
            errors.push(what, "the name must be lower-case letters, digits and '_'");
        }
        if row.nr >= MAX_NR {
            errors.push(what, format!("nr must be below {MAX_NR}"));
        }
        if let Some(prev) = by_name.insert(row.name.clone(), row.nr) {
            errors.push(what, format!("duplicate name (also used by nr {prev})"));
        }
        if let Some(prev) = by_nr.insert(row.nr, row.name.clone()) {
            errors.push(what, format!("duplicate number (also used by {prev:?})"));
        }
        let outputs = check_mem_args(what, &row.outputs, true, errors);
        let inputs = check_mem_args(what, &row.inputs, false, errors);
        let Some(class) = check_class(what, &row.class, &row.errno, &row.hint, errors) else {
            continue;
        };
        if matches!(class, Class::Refused(_))
            && (!outputs.is_empty() || !inputs.is_empty() || row.may_block)
        {
            errors.push(
                what,
                "a refused call is never executed: no outputs, inputs or may_block",
            );
        }
        if row.may_block {
            for o in &outputs {
                if matches!(o.size, Size::Ret | Size::RetTimes(_)) && o.max.is_none() {
                    errors.push(
                        what,
                        format!(
                            "output of arg {}: a call that may block needs a max for an output \
                             sized by the result (its buffer moves to scratch memory while the \
                             call blocks, see record/redirect.rs)",
                            o.arg
                        ),
                    );
                }
            }
        }
        if row.answer.is_some()
            && (!matches!(class, Class::Recorded)
                || row.may_block
                || row.special
                || !outputs.is_empty())
        {
            errors.push(
                what,
                "an answered call never runs: class \"recorded\", no outputs, not may_block or special",
            );
        }
        if !row.same_result && !matches!(class, Class::Executed) {
            errors.push(
                what,
                "same_result is only meaningful with class \"executed\" (other calls' results are injected)",
            );
        }
        if row.untraced && (!matches!(class, Class::Executed) || row.may_block || row.special) {
            errors.push(
                what,
                "untraced calls run natively at record and replay: class \"executed\", not may_block or special",
            );
        }
        out.push(Syscall {
            name: row.name,
            nr: row.nr,
            class,
            may_block: row.may_block,
            untraced: row.untraced,
            special: row.special,
            answer: row.answer,
            same_result: row.same_result,
            outputs,
            inputs,
            note: row.note,
            libc: row.libc,
        });
    }
    out.sort_by_key(|s| s.nr);
    out
}

fn check_requests(table: &str, rows: Vec<RequestRow>, errors: &mut Errors) -> Vec<Request> {
    let mut by_name: HashMap<String, u64> = HashMap::new();
    let mut by_value: HashMap<u64, String> = HashMap::new();
    let mut out = Vec::new();
    for row in rows {
        let what = format!("[[{table}]] {:?} (value {:#x})", row.name, row.value);
        let what = what.as_str();
        if !valid_ident(&row.name, true) {
            errors.push(what, "the name must be upper-case letters, digits and '_'");
        }
        if let Some(prev) = by_name.insert(row.name.clone(), row.value) {
            errors.push(
                what,
                format!("duplicate name (also used by value {prev:#x})"),
            );
        }
        if let Some(prev) = by_value.insert(row.value, row.name.clone()) {
            errors.push(what, format!("duplicate value (also used by {prev:?})"));
        }
        let outputs = check_mem_args(what, &row.outputs, true, errors);
        let inputs = check_mem_args(what, &row.inputs, false, errors);
        let Some(class) = check_class(what, &row.class, &row.errno, &row.hint, errors) else {
            continue;
        };
        if matches!(class, Class::Refused(_)) && (!outputs.is_empty() || !inputs.is_empty()) {
            errors.push(
                what,
                "a refused request is never executed: no outputs or inputs",
            );
        }
        out.push(Request {
            name: row.name,
            value: row.value,
            class,
            outputs,
            inputs,
            note: row.note,
            libc: row.libc,
        });
    }
    out.sort_by_key(|r| r.value);
    out
}

// ----------------------------------------------------------------------------------------
// Code generation
// ----------------------------------------------------------------------------------------

fn rust_class(class: &Class) -> String {
    match class {
        Class::Recorded => "Class::Recorded".to_string(),
        Class::Executed => "Class::Executed".to_string(),
        Class::Refused(errno) => format!("Class::Refused {{ errno: libc::{errno} }}"),
        Class::Unsupported(hint) => format!("Class::Unsupported {{ hint: {hint:?} }}"),
    }
}

fn rust_size(size: &Size) -> String {
    match size {
        Size::Ret => "Size::Ret".to_string(),
        Size::Arg(n) => format!("Size::Arg({n})"),
        Size::Fixed(k) => format!("Size::Fixed({k})"),
        Size::ArgTimes(n, k) => format!("Size::ArgTimes({n}, {k})"),
        Size::RetTimes(k) => format!("Size::RetTimes({k})"),
        Size::CStr => "Size::CStr".to_string(),
        Size::SockLen(n) => format!("Size::SockLen({n})"),
        Size::Iovec(n) => format!("Size::Iovec({n})"),
    }
}

fn rust_mem_args(args: &[MemArg]) -> String {
    if args.is_empty() {
        return "&[]".to_string();
    }
    let items: Vec<String> = args
        .iter()
        .map(|a| {
            let max = match &a.max {
                Some(m) => format!("Some({})", rust_size(m)),
                None => "None".to_string(),
            };
            format!(
                "MemArg {{ arg: {}, size: {}, max: {max} }}",
                a.arg,
                rust_size(&a.size)
            )
        })
        .collect();
    format!("&[{}]", items.join(", "))
}

fn generate_table(syscalls: &[Syscall], tables: &[(&str, &str, &str, &[Request])]) -> String {
    let mut s = String::new();
    let w = &mut s;
    writeln!(
        w,
        "// @generated by recorder/build.rs from recorder/{TABLE_FILE}. Do not edit."
    )
    .unwrap();
    writeln!(w).unwrap();

    // nr constants.
    writeln!(
        w,
        "/// System call numbers on x86_64, one constant per row of `{TABLE_FILE}`."
    )
    .unwrap();
    writeln!(w, "pub mod nr {{").unwrap();
    for sc in syscalls {
        writeln!(w, "    #[doc = \"`{}` ({}).\"]", sc.name, sc.nr).unwrap();
        writeln!(
            w,
            "    pub const {}: u64 = {};",
            sc.name.to_ascii_uppercase(),
            sc.nr
        )
        .unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();

    // The table itself.
    writeln!(
        w,
        "/// Every system call the recorder knows, sorted by number."
    )
    .unwrap();
    writeln!(w, "pub static SYSCALLS: &[SyscallDesc] = &[").unwrap();
    for sc in syscalls {
        writeln!(
            w,
            "    SyscallDesc {{ name: {:?}, nr: {}, class: {}, may_block: {}, untraced: {}, outputs: {}, inputs: {}, special: {}, answer: {:?}, same_result: {}, note: {:?} }},",
            sc.name,
            sc.nr,
            rust_class(&sc.class),
            sc.may_block,
            sc.untraced,
            rust_mem_args(&sc.outputs),
            rust_mem_args(&sc.inputs),
            sc.special,
            sc.answer,
            sc.same_result,
            sc.note,
        )
        .unwrap();
    }
    writeln!(w, "];").unwrap();
    writeln!(w).unwrap();

    // Index by number.
    let max_nr = syscalls.last().map_or(0, |s| s.nr);
    let mut by_nr = vec![u16::MAX; max_nr as usize + 1];
    for (i, sc) in syscalls.iter().enumerate() {
        by_nr[sc.nr as usize] = i as u16;
    }
    writeln!(w, "/// The highest syscall number in [`SYSCALLS`].").unwrap();
    writeln!(w, "pub const MAX_NR: u64 = {max_nr};").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/// Index into [`SYSCALLS`] by number; `u16::MAX` where there is no row."
    )
    .unwrap();
    writeln!(w, "static BY_NR: [u16; {}] = [", by_nr.len()).unwrap();
    for chunk in by_nr.chunks(16) {
        let items: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
        writeln!(w, "    {},", items.join(", ")).unwrap();
    }
    writeln!(w, "];").unwrap();
    writeln!(w).unwrap();

    // Index by name (sorted for binary search).
    let mut by_name: Vec<(&str, usize)> = syscalls
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    by_name.sort();
    writeln!(w, "/// `(name, index into SYSCALLS)`, sorted by name.").unwrap();
    writeln!(w, "static BY_NAME: [(&str, u16); {}] = [", by_name.len()).unwrap();
    for (name, i) in &by_name {
        writeln!(w, "    ({name:?}, {i}),").unwrap();
    }
    writeln!(w, "];").unwrap();
    writeln!(w).unwrap();

    w.push_str(
        r#"/// The row of system call `nr`, if the recorder knows it (O(1)).
pub fn lookup(nr: u64) -> Option<&'static SyscallDesc> {
    let index = *BY_NR.get(usize::try_from(nr).ok()?)?;
    if index == u16::MAX {
        None
    } else {
        Some(&SYSCALLS[index as usize])
    }
}

/// The row of the system call called `name` (as in `man 2`, e.g. `"newfstatat"`).
pub fn by_name(name: &str) -> Option<&'static SyscallDesc> {
    let i = BY_NAME.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
    Some(&SYSCALLS[BY_NAME[i].1 as usize])
}

/// The name of system call `nr`, or `syscall_<nr>` when the recorder does not know it.
pub fn name_of(nr: u64) -> String {
    match lookup(nr) {
        Some(desc) => desc.name.to_string(),
        // syscall(-1) and friends read better signed.
        None => format!("syscall_{}", nr as i64),
    }
}

"#,
    );

    // Request tables.
    for (static_name, fn_name, doc, rows) in tables {
        writeln!(w, "/// {doc}, sorted by value.").unwrap();
        writeln!(w, "pub static {static_name}: &[RequestDesc] = &[").unwrap();
        for r in rows.iter() {
            if !r.note.is_empty() {
                writeln!(w, "    // {}: {}", r.name, r.note.replace('\n', " ")).unwrap();
            }
            writeln!(
                w,
                "    RequestDesc {{ name: {:?}, value: {:#x}, class: {}, outputs: {}, inputs: {} }},",
                r.name,
                r.value,
                rust_class(&r.class),
                rust_mem_args(&r.outputs),
                rust_mem_args(&r.inputs),
            )
            .unwrap();
        }
        writeln!(w, "];").unwrap();
        writeln!(w).unwrap();
        writeln!(
            w,
            "/// The row of [`{static_name}`] with this value, if the recorder knows it."
        )
        .unwrap();
        writeln!(
            w,
            "pub fn {fn_name}(value: u64) -> Option<&'static RequestDesc> {{"
        )
        .unwrap();
        writeln!(w, "    let index = match value {{").unwrap();
        for (i, r) in rows.iter().enumerate() {
            writeln!(w, "        {:#x} => {i},", r.value).unwrap();
        }
        writeln!(w, "        _ => return None,").unwrap();
        writeln!(w, "    }};").unwrap();
        writeln!(w, "    Some(&{static_name}[index])").unwrap();
        writeln!(w, "}}").unwrap();
        writeln!(w).unwrap();
    }
    s
}

/// The lists the test compares with the `libc` crate. Rows marked `libc = false` are listed
/// separately so that the test can check them against its own numbers.
fn generate_libc_check(syscalls: &[Syscall], tables: &[(&str, &str, &str, &[Request])]) -> String {
    let mut s = String::new();
    let w = &mut s;
    writeln!(
        w,
        "// @generated by recorder/build.rs from recorder/{TABLE_FILE}. Do not edit."
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "/// `(name, number in the table, libc::SYS_<name>)`.").unwrap();
    writeln!(w, "#[allow(clippy::unnecessary_cast)]").unwrap();
    writeln!(w, "pub const LIBC_SYSCALLS: &[(&str, u64, i64)] = &[").unwrap();
    for sc in syscalls.iter().filter(|s| s.libc) {
        writeln!(
            w,
            "    ({:?}, {}, libc::SYS_{} as i64),",
            sc.name, sc.nr, sc.name
        )
        .unwrap();
    }
    writeln!(w, "];").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/// `(name, number in the table)` of the rows marked `libc = false`."
    )
    .unwrap();
    writeln!(w, "pub const NOT_IN_LIBC_SYSCALLS: &[(&str, u64)] = &[").unwrap();
    for sc in syscalls.iter().filter(|s| !s.libc) {
        writeln!(w, "    ({:?}, {}),", sc.name, sc.nr).unwrap();
    }
    writeln!(w, "];").unwrap();
    for (static_name, _, _, rows) in tables {
        writeln!(w).unwrap();
        writeln!(
            w,
            "/// `(name, value in the table, libc::<name>)` of `{static_name}`."
        )
        .unwrap();
        writeln!(w, "#[allow(clippy::unnecessary_cast)]").unwrap();
        writeln!(w, "pub const LIBC_{static_name}: &[(&str, u64, u64)] = &[").unwrap();
        for r in rows.iter().filter(|r| r.libc) {
            writeln!(
                w,
                "    ({:?}, {:#x}, libc::{} as u64),",
                r.name, r.value, r.name
            )
            .unwrap();
        }
        writeln!(w, "];").unwrap();
        writeln!(w).unwrap();
        writeln!(
            w,
            "/// `(name, value in the table)` of the `{static_name}` rows marked `libc = false`."
        )
        .unwrap();
        writeln!(
            w,
            "pub const NOT_IN_LIBC_{static_name}: &[(&str, u64)] = &["
        )
        .unwrap();
        for r in rows.iter().filter(|r| !r.libc) {
            writeln!(w, "    ({:?}, {:#x}),", r.name, r.value).unwrap();
        }
        writeln!(w, "];").unwrap();
    }
    s
}

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
    println!("cargo:rerun-if-changed={TABLE_FILE}");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let source_path = manifest_dir.join(TABLE_FILE);
    let source = match std::fs::read_to_string(&source_path) {
        Ok(s) => s,
        Err(e) => fail(&[format!("cannot read {}: {e}", source_path.display())]),
    };
    let file: TableFile = match toml::from_str(&source) {
        Ok(f) => f,
        Err(e) => fail(&[format!("not valid: {e}")]),
    };

    let mut errors = Errors::default();
    let syscalls = check_syscalls(file.syscall, &mut errors);
    let ioctls = check_requests("ioctl", file.ioctl, &mut errors);
    let fcntls = check_requests("fcntl", file.fcntl, &mut errors);
    let prctls = check_requests("prctl", file.prctl, &mut errors);
    let arch_prctls = check_requests("arch_prctl", file.arch_prctl, &mut errors);
    if !errors.0.is_empty() {
        fail(&errors.0);
    }

    let tables: [(&str, &str, &str, &[Request]); 4] = [
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
    ];

    // A summary in the build log (`cargo build -vv`), handy when editing the table.
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for sc in &syscalls {
        let class = match sc.class {
            Class::Recorded => "recorded",
            Class::Executed => "executed",
            Class::Refused(_) => "refused",
            Class::Unsupported(_) => "unsupported",
        };
        *per_class.entry(class).or_default() += 1;
    }
    eprintln!("{TABLE_FILE}: {} syscalls {per_class:?}", syscalls.len());

    write_if_changed(
        &out_dir.join("syscall_table.rs"),
        &generate_table(&syscalls, &tables),
    );
    write_if_changed(
        &out_dir.join("syscall_libc_check.rs"),
        &generate_libc_check(&syscalls, &tables),
    );
}
