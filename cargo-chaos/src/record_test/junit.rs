//! `--junit PATH`: the hunt as a JUnit XML report, what GitLab's
//! `artifacts:reports:junit` and GitHub's test-report actions read. One testcase per
//! test hunted; a test captured failing is a `<failure>` whose text holds the failing
//! run's output, the archive's path or URL, and the replay command.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::Delivered;

/// A test the hunt ran: its unit's `package/target` and its name (or the unit's label
/// when its tests were not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunted {
    /// `package/target`.
    pub binary: String,
    /// The test's name.
    pub test: String,
}

/// Writes the report for a hunt of `hunted` that captured `delivered` in `runs` runs.
pub fn write(
    path: &Path,
    hunted: &[Hunted],
    delivered: &[Delivered],
    runs: u64,
    time: Duration,
) -> anyhow::Result<()> {
    let mut suite = TestSuite::new("cargo-record-test");
    suite.set_time(time);
    suite.add_property(("runs", runs.to_string().as_str()));
    let mut cases: Vec<TestCase> = Vec::new();
    for h in hunted {
        let captured: Vec<&Delivered> = delivered
            .iter()
            .filter(|d| d.binary == h.binary && d.failure.test.as_deref() == Some(&h.test))
            .collect();
        cases.push(case(&h.binary, &h.test, &captured));
    }
    // Failures of no listed test (a binary that crashed outside its tests).
    for d in delivered {
        let known = hunted
            .iter()
            .any(|h| d.binary == h.binary && d.failure.test.as_deref() == Some(&h.test));
        if !known {
            let name = d.failure.test.clone().unwrap_or_else(|| d.unit.clone());
            cases.push(case(&d.binary, &name, &[d]));
        }
    }
    suite.add_test_cases(cases);
    let mut report = Report::new("cargo-chaos");
    report.set_time(time);
    report.add_test_suite(suite);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    report
        .serialize(std::io::BufWriter::new(file))
        .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    Ok(())
}

/// One testcase: passed, or failed with what each capture of it says.
fn case(binary: &str, test: &str, captured: &[&Delivered]) -> TestCase {
    let Some(first) = captured.first() else {
        let mut c = TestCase::new(test, TestCaseStatus::success());
        c.set_classname(binary);
        return c;
    };
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    let message = first
        .failure
        .message
        .as_deref()
        .and_then(|m| m.lines().next())
        .unwrap_or("the test failed");
    status.set_message(message);
    status.set_type("flaky test captured by cargo record-test");
    let mut text = String::new();
    for d in captured {
        if let Some(l) = &d.failure.location {
            text.push_str(&format!("panicked at {l}\n"));
        }
        text.push_str(&format!("archive: {}\n", d.archive.display()));
        if let Some(u) = &d.url {
            text.push_str(&format!("uploaded to: {u}\n"));
        }
        if d.undelivered {
            text.push_str("(not uploaded: see the log)\n");
        }
        text.push_str(&format!("replay it with:\n    {}\n\n", d.replay_command));
    }
    text.push_str("---- output of the failing run ----\n");
    text.push_str(&first.output);
    status.set_description(text);
    let mut c = TestCase::new(test, status);
    c.set_classname(binary);
    c
}
