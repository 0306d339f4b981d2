//! Issue 18 item 3: `--junit PATH` writes a JUnit report with one testcase per test
//! hunted, a captured test as a failure whose text holds the replay command and the
//! archive; under GitHub Actions each capture also prints an `::error` annotation at its
//! panic's line.

use std::collections::BTreeMap;

use quick_xml::events::Event;

use super::common::{example_crate, example_manifest, Run, Sandbox};

/// A testcase read back: classname, and the failure's message and text if it failed.
#[derive(Debug, Default)]
pub struct Case {
    pub classname: String,
    pub failure: Option<(String, String)>,
}

/// The `<testsuite>` attributes and the testcases by name.
pub fn read_report(xml: &str) -> (BTreeMap<String, String>, BTreeMap<String, Case>) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suite = BTreeMap::new();
    let mut cases: BTreeMap<String, Case> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_failure = false;
    let attrs = |e: &quick_xml::events::BytesStart| -> BTreeMap<String, String> {
        e.attributes()
            .map(|a| {
                let a = a.expect("a well-formed attribute");
                (
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .expect("an attribute value")
                        .into_owned(),
                )
            })
            .collect()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testsuite" => {
                suite = attrs(&e)
            }
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                let a = attrs(&e);
                let name = a["name"].clone();
                assert!(!cases.contains_key(&name), "{name} twice");
                cases.insert(
                    name.clone(),
                    Case {
                        classname: a["classname"].clone(),
                        failure: None,
                    },
                );
                current = Some(name);
            }
            Event::Start(e) if e.name().as_ref() == b"failure" => {
                let a = attrs(&e);
                let c = cases.get_mut(current.as_ref().unwrap()).unwrap();
                c.failure = Some((a.get("message").cloned().unwrap_or_default(), String::new()));
                in_failure = true;
            }
            Event::Text(t) if in_failure => {
                let c = cases.get_mut(current.as_ref().unwrap()).unwrap();
                let text = t.decode().expect("text").into_owned();
                let text = quick_xml::escape::unescape(&text)
                    .expect("escaped")
                    .into_owned();
                c.failure.as_mut().unwrap().1.push_str(&text);
            }
            Event::End(e) if e.name().as_ref() == b"failure" => in_failure = false,
            _ => {}
        }
    }
    (suite, cases)
}

/// count:1/2 of the example crate: always_passes, child_process, mutex_interleaving,
/// temp_file_race_b (libtest lists alphabetically). child_process and
/// mutex_interleaving each fail at least one run in four (flaky.rs); 200 runs in
/// rotation give each 50, all passing with probability below 0.75^100 ≈ 3e-13. The hunt
/// stops at the first failure: exactly one testcase fails.
#[test]
fn junit_report_and_github_annotations() {
    let sb = Sandbox::new();
    let manifest = example_manifest();
    let target = sb.target();
    let report = sb.path("reports/junit.xml");
    let mut cmd = sb.record_test_cmd([
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
        "--per-test",
        "--partition",
        "count:1/2",
        "--until-fail",
        "--max-runs",
        "200",
        "--junit",
        report.to_str().unwrap(),
    ]);
    let checkout = example_crate().parent().unwrap().to_path_buf();
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", &checkout)
        .env("GITHUB_OUTPUT", sb.path("github_output"))
        .env("GITHUB_STEP_SUMMARY", sb.path("summary.md"));
    let run = Run::of(cmd);
    run.expect_status(1);

    let xml = std::fs::read_to_string(&report).expect("the report was written");
    let (suite, cases) = read_report(&xml);
    assert_eq!(suite["tests"], "4", "{xml}");
    assert_eq!(suite["failures"], "1", "{xml}");
    assert_eq!(suite["errors"], "0", "{xml}");
    let names: Vec<&str> = cases.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "tests::always_passes",
            "tests::child_process",
            "tests::mutex_interleaving",
            "tests::temp_file_race_b"
        ],
        "{xml}"
    );
    for c in cases.values() {
        assert_eq!(c.classname, "flaky-example/flaky_example");
    }
    let (failed, case) = cases
        .iter()
        .find(|(_, c)| c.failure.is_some())
        .expect("a failure");
    assert!(
        failed == "tests::child_process" || failed == "tests::mutex_interleaving",
        "{failed}"
    );
    let (message, text) = case.failure.as_ref().unwrap();
    assert!(
        message.contains("a multiple of 3") || message.contains("got the lock first"),
        "{message}"
    );
    let archive = super::common::capture1(r"archive: (\S+\.chaos\.tar\.zst)", text);
    assert!(std::path::Path::new(&archive).is_file(), "{text}");
    assert!(
        text.contains(&format!("cargo replay-artifact {archive}")),
        "the replay command names the archive:\n{text}"
    );
    assert!(
        text.contains("---- output of the failing run ----"),
        "{text}"
    );

    // The annotation: at the panic's line, the path from the checkout's root.
    let stdout = run.stdout_str();
    let annotation = stdout
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("an ::error line\n{}", run.show()));
    let line = super::common::capture1(
        r"^::error file=example-crate/src/lib\.rs,line=(\d+),",
        annotation,
    );
    let source = std::fs::read_to_string(example_crate().join("src/lib.rs")).unwrap();
    let at = source
        .lines()
        .nth(line.parse::<usize>().unwrap() - 1)
        .unwrap();
    assert!(at.contains("assert"), "line {line} is the assertion: {at}");
    assert!(
        annotation.contains("replay it: cargo replay-artifact "),
        "{annotation}"
    );
}
