//! What failed in a run, read from libtest's output: each failing test with its own
//! panic location and message (libtest prints one `---- NAME stdout ----` section per
//! failing test, holding that test's output and its panic).
//!
//! The hunt tells failures apart by (test, panic location) of each failing test, so two
//! tests failing in one run are two failures, each captured under its own name.

/// One failing test of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TestFailure {
    /// The test's name; `None` when the output names no test (a binary that crashed
    /// outside a test, or not a libtest binary).
    pub test: Option<String>,
    /// `FILE:LINE:COL` of its panic, when it panicked.
    pub location: Option<String>,
    /// The panic message (its first lines), when it panicked.
    pub message: Option<String>,
}

impl TestFailure {
    /// What tells two failures apart.
    pub fn key(&self) -> (Option<String>, Option<String>) {
        (self.test.clone(), self.location.clone())
    }

    /// `FILE` and `LINE` of the panic location.
    pub fn file_line(&self) -> Option<(&str, u32)> {
        let loc = self.location.as_deref()?;
        let mut parts = loc.rsplitn(3, ':');
        let (_col, line, file) = (parts.next()?, parts.next()?, parts.next()?);
        Some((file, line.parse().ok()?))
    }
}

/// Most lines of a panic message kept.
const MESSAGE_LINES: usize = 20;

/// The failing tests of a run. `only_test` is the one test run (`--per-test`): the
/// failure is that test's even if libtest's output was cut short. A run whose output
/// names no failing test gives one failure with no name (and the first panic found).
pub fn parse(stdout: &str, stderr: &str, only_test: Option<&str>) -> Vec<TestFailure> {
    let mut out: Vec<TestFailure> = sections(stdout)
        .into_iter()
        .map(|(name, body)| {
            let (location, message) = first_panic(body).unwrap_or_default();
            TestFailure {
                test: Some(name.to_string()),
                location,
                message,
            }
        })
        .collect();
    if let Some(t) = only_test {
        out.retain(|f| f.test.as_deref() == Some(t));
    }
    if out.is_empty() {
        let (location, message) = first_panic(stdout)
            .or_else(|| first_panic(stderr))
            .unwrap_or_default();
        out.push(TestFailure {
            test: only_test.map(str::to_string),
            location,
            message,
        });
    }
    // A test failing twice in one output (it should not) counts once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert(f.test.clone()));
    out
}

/// libtest's `---- NAME stdout ----` sections: the name and what follows up to the next
/// section or the closing `failures:` list.
fn sections(stdout: &str) -> Vec<(&str, &str)> {
    let mut found: Vec<(&str, usize, usize)> = Vec::new();
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        let end = offset + line.len();
        if let Some(name) = l
            .strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" stdout ----"))
        {
            if let Some(last) = found.last_mut() {
                last.2 = offset;
            }
            found.push((name, end, stdout.len()));
        } else if l == "failures:" || l.starts_with("test result: ") {
            if let Some(last) = found.last_mut() {
                if last.2 == stdout.len() {
                    last.2 = offset;
                }
            }
        }
        offset = end;
    }
    found
        .into_iter()
        .map(|(name, from, to)| (name, &stdout[from..to.max(from)]))
        .collect()
}

/// The first `panicked at FILE:LINE:COL:` in `text`, and the message after it (up to a
/// `note:` line, a blank line, or [`MESSAGE_LINES`] lines).
fn first_panic(text: &str) -> Option<(Option<String>, Option<String>)> {
    let at = text.find("panicked at ")?;
    let rest = &text[at + "panicked at ".len()..];
    rest.find(':')?;
    let end = rest.find(['\n', ' ']).unwrap_or(rest.len());
    let location = rest[..end].trim_end_matches(':').to_string();
    // Since Rust 1.73 the message is on the next lines; before, after `', `.
    let after = rest[end..].strip_prefix('\n').unwrap_or("");
    let message: Vec<&str> = after
        .lines()
        .take_while(|l| !l.is_empty() && !l.starts_with("note: ") && !l.starts_with("---- "))
        .take(MESSAGE_LINES)
        .collect();
    let message = (!message.is_empty()).then(|| message.join("\n"));
    Some((Some(location), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "running 3 tests\ntest tests::c ... ok\ntest tests::a ... FAILED\ntest tests::b ... FAILED\n\nfailures:\n\n---- tests::a stdout ----\nvalue: 3\n\nthread 'tests::a' (12) panicked at src/lib.rs:24:95:\nboom\nsecond line\nnote: run with `RUST_BACKTRACE=1`\n\n---- tests::b stdout ----\n\nthread 'tests::b' (13) panicked at src/lib.rs:40:5:\nassertion `left == right` failed\n  left: 1\n right: 2\n\n\nfailures:\n    tests::a\n    tests::b\n\ntest result: FAILED. 1 passed; 2 failed\n";

    #[test]
    fn each_failing_test_has_its_own_location_and_message() {
        let f = parse(TWO, "", None);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].test.as_deref(), Some("tests::a"));
        assert_eq!(f[0].location.as_deref(), Some("src/lib.rs:24:95"));
        assert_eq!(f[0].message.as_deref(), Some("boom\nsecond line"));
        assert_eq!(f[0].file_line(), Some(("src/lib.rs", 24)));
        assert_eq!(f[1].test.as_deref(), Some("tests::b"));
        assert_eq!(f[1].location.as_deref(), Some("src/lib.rs:40:5"));
        assert_eq!(
            f[1].message.as_deref(),
            Some("assertion `left == right` failed\n  left: 1\n right: 2")
        );
    }

    #[test]
    fn the_one_test_of_a_per_test_run_and_crashes_without_tests() {
        let f = parse(TWO, "", Some("tests::b"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].location.as_deref(), Some("src/lib.rs:40:5"));
        // Cut short (killed): no section, the name is still known.
        let f = parse("running 1 test\n", "", Some("tests::x"));
        assert_eq!(f[0].test.as_deref(), Some("tests::x"));
        assert_eq!(f[0].location, None);
        // Not libtest: the panic on stderr.
        let f = parse("", "thread 'main' panicked at src/main.rs:2:5:\nno\n", None);
        assert_eq!(f[0].test, None);
        assert_eq!(f[0].location.as_deref(), Some("src/main.rs:2:5"));
        assert_eq!(f[0].message.as_deref(), Some("no"));
        assert_eq!(parse("nothing", "", None)[0].location, None);
    }
}
