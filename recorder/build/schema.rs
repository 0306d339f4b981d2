//! The shape of `syscalls.toml`: its rows as written (deserialized with serde, unknown
//! keys refused) and the grammar of its size strings. What the rows mean is checked in
//! `checks.rs`.

use serde::Deserialize;

use crate::model::Size;

/// x86_64 system calls take at most six arguments.
pub const MAX_ARGS: u8 = 6;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableFile {
    #[serde(default)]
    pub syscall: Vec<SyscallRow>,
    #[serde(default)]
    pub ioctl: Vec<RequestRow>,
    #[serde(default)]
    pub fcntl: Vec<RequestRow>,
    #[serde(default)]
    pub prctl: Vec<RequestRow>,
    #[serde(default)]
    pub arch_prctl: Vec<RequestRow>,
    #[serde(default)]
    pub prctl_mm: Vec<RequestRow>,
    #[serde(default)]
    pub keyctl: Vec<RequestRow>,
}

/// A `[[syscall]]` row.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallRow {
    pub name: String,
    pub nr: u64,
    pub class: String,
    pub errno: Option<String>,
    pub hint: Option<String>,
    #[serde(default)]
    pub may_block: bool,
    #[serde(default)]
    pub untraced: bool,
    #[serde(default)]
    pub buffered: bool,
    #[serde(default)]
    pub changes_fds: bool,
    #[serde(default)]
    pub special: bool,
    pub answer: Option<i64>,
    #[serde(default = "yes")]
    pub same_result: bool,
    #[serde(default)]
    pub outputs: Vec<MemArgRow>,
    #[serde(default)]
    pub inputs: Vec<MemArgRow>,
    #[serde(default)]
    pub note: String,
    #[serde(default = "yes")]
    pub libc: bool,
}

/// A `[[ioctl]]`, `[[fcntl]]`, `[[prctl]]` or `[[arch_prctl]]` row.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRow {
    pub name: String,
    pub value: u64,
    pub class: String,
    pub errno: Option<String>,
    pub hint: Option<String>,
    #[serde(default)]
    pub outputs: Vec<MemArgRow>,
    #[serde(default)]
    pub inputs: Vec<MemArgRow>,
    #[serde(default)]
    pub note: String,
    #[serde(default = "yes")]
    pub libc: bool,
}

/// `{ arg = N, size = "...", max = "...", on_error = true }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemArgRow {
    pub arg: u8,
    pub size: String,
    pub max: Option<String>,
    #[serde(default)]
    pub on_error: bool,
}

fn yes() -> bool {
    true
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
pub fn parse_size(s: &str) -> Result<Size, String> {
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
