//! What the rows of `syscalls.toml` mean: each row is checked and turned into the
//! recorder's own model types (`src/syscalls/model.rs`, shared with the recorder), and
//! every problem is collected, so that one build reports all of them.

use std::collections::HashMap;

use crate::model::{Class, MemArg, RequestDesc, Size, SyscallDesc};
use crate::schema::{parse_size, MemArgRow, RequestRow, SyscallRow, MAX_ARGS};

/// Syscall numbers must stay below this (the lookup array is indexed by number).
const MAX_NR: u64 = 1024;

/// The errno names a `refused` row may use, with their values (the generated code names
/// them `libc::<NAME>`).
pub const ERRNO_NAMES: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("ETXTBSY", libc::ETXTBSY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EMLINK", libc::EMLINK),
    ("EPIPE", libc::EPIPE),
    ("EDOM", libc::EDOM),
    ("ERANGE", libc::ERANGE),
    ("EDEADLK", libc::EDEADLK),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENOLCK", libc::ENOLCK),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ELOOP", libc::ELOOP),
    ("ENOMSG", libc::ENOMSG),
    ("EIDRM", libc::EIDRM),
    ("ENODATA", libc::ENODATA),
    ("ETIME", libc::ETIME),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("EBADFD", libc::EBADFD),
    ("EILSEQ", libc::EILSEQ),
    ("EUSERS", libc::EUSERS),
    ("ENOTSOCK", libc::ENOTSOCK),
    ("EDESTADDRREQ", libc::EDESTADDRREQ),
    ("EMSGSIZE", libc::EMSGSIZE),
    ("EPROTOTYPE", libc::EPROTOTYPE),
    ("ENOPROTOOPT", libc::ENOPROTOOPT),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("ESOCKTNOSUPPORT", libc::ESOCKTNOSUPPORT),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EPFNOSUPPORT", libc::EPFNOSUPPORT),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
    ("ENETDOWN", libc::ENETDOWN),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ENETRESET", libc::ENETRESET),
    ("ECONNABORTED", libc::ECONNABORTED),
    ("ECONNRESET", libc::ECONNRESET),
    ("ENOBUFS", libc::ENOBUFS),
    ("EISCONN", libc::EISCONN),
    ("ENOTCONN", libc::ENOTCONN),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("EHOSTDOWN", libc::EHOSTDOWN),
    ("EHOSTUNREACH", libc::EHOSTUNREACH),
    ("EALREADY", libc::EALREADY),
    ("EINPROGRESS", libc::EINPROGRESS),
    ("ESTALE", libc::ESTALE),
    ("EDQUOT", libc::EDQUOT),
    ("ECANCELED", libc::ECANCELED),
    ("ENOKEY", libc::ENOKEY),
    ("EKEYEXPIRED", libc::EKEYEXPIRED),
    ("EKEYREVOKED", libc::EKEYREVOKED),
    ("EKEYREJECTED", libc::EKEYREJECTED),
    ("EOWNERDEAD", libc::EOWNERDEAD),
    ("ENOTRECOVERABLE", libc::ENOTRECOVERABLE),
    ("ERFKILL", libc::ERFKILL),
    ("EHWPOISON", libc::EHWPOISON),
];

fn errno_value(name: &str) -> Option<i32> {
    ERRNO_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| v)
}

/// The name of an errno value of [`ERRNO_NAMES`].
pub fn errno_name(value: i32) -> &'static str {
    ERRNO_NAMES
        .iter()
        .find(|&&(_, v)| v == value)
        .map(|&(n, _)| n)
        .expect("an errno of ERRNO_NAMES")
}

/// The model's types hold `&'static` data: the build script makes it so (it ends
/// after generating the table).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A checked `[[syscall]]` row.
pub struct Syscall {
    pub desc: SyscallDesc,
    /// The `libc` crate has `SYS_<name>` (the test compares numbers).
    pub libc: bool,
}

/// A checked request row.
pub struct Request {
    pub desc: RequestDesc,
    pub note: String,
    /// The `libc` crate has the constant.
    pub libc: bool,
}

/// Collects every problem so that one build reports all of them.
#[derive(Default)]
pub struct Errors(pub Vec<String>);

impl Errors {
    fn push(&mut self, what: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{what}: {msg}"));
    }
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
        if row.on_error && !(output && matches!(size, Size::Fixed(_))) {
            errors.push(
                what,
                format!(
                    "{kind} of arg {}: on_error is only for outputs of a fixed size (\"fixed:K\")",
                    row.arg
                ),
            );
            continue;
        }
        out.push(MemArg {
            arg: row.arg,
            size,
            max,
            on_error: row.on_error,
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
            Some(e) if errno_value(e).is_none() => {
                errors.push(
                    what,
                    format!(
                        "unknown errno {e:?} (add it to ERRNO_NAMES in build/checks.rs if \
                             libc has it)"
                    ),
                );
                return None;
            }
            Some(e) => Class::Refused {
                errno: errno_value(e).expect("checked"),
            },
        },
        "unsupported" => match hint {
            Some(h) if !h.trim().is_empty() => Class::Unsupported {
                hint: leak(h.clone()),
            },
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
    if errno.is_some() && !matches!(class, Class::Refused { .. }) {
        errors.push(what, "errno is only meaningful with class \"refused\"");
    }
    if hint.is_some() && !matches!(class, Class::Unsupported { .. }) {
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

pub fn check_syscalls(rows: Vec<SyscallRow>, errors: &mut Errors) -> Vec<Syscall> {
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
        if matches!(class, Class::Refused { .. })
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
        let plain_memory = |args: &[MemArg]| {
            args.iter()
                .all(|a| !matches!(a.size, Size::CStr | Size::Iovec(_) | Size::SockLen(_)))
        };
        if row.buffered
            && (!matches!(class, Class::Recorded)
                || row.special
                || row.answer.is_some()
                || !plain_memory(&inputs)
                || !plain_memory(&outputs))
        {
            errors.push(
                what,
                "buffered calls are recorded by the preload library: class \"recorded\", not special or answered, inputs and outputs sized by arguments, results or constants",
            );
        }
        if row.changes_fds && !matches!(class, Class::Recorded) {
            errors.push(
                what,
                "changes_fds marks calls whose event carries the cache invalidation as a memory write: class \"recorded\"",
            );
        }
        out.push(Syscall {
            desc: SyscallDesc {
                name: leak(row.name),
                nr: row.nr,
                class,
                may_block: row.may_block,
                untraced: row.untraced,
                buffered: row.buffered,
                changes_fds: row.changes_fds,
                outputs: outputs.leak(),
                inputs: inputs.leak(),
                special: row.special,
                answer: row.answer,
                same_result: row.same_result,
                note: leak(row.note),
            },
            libc: row.libc,
        });
    }
    out.sort_by_key(|s| s.desc.nr);
    out
}

pub fn check_requests(table: &str, rows: Vec<RequestRow>, errors: &mut Errors) -> Vec<Request> {
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
        if matches!(class, Class::Refused { .. }) && (!outputs.is_empty() || !inputs.is_empty()) {
            errors.push(
                what,
                "a refused request is never executed: no outputs or inputs",
            );
        }
        out.push(Request {
            desc: RequestDesc {
                name: leak(row.name),
                value: row.value,
                class,
                outputs: outputs.leak(),
                inputs: inputs.leak(),
            },
            note: row.note,
            libc: row.libc,
        });
    }
    out.sort_by_key(|r| r.desc.value);
    out
}
