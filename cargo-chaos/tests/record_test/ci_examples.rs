//! `ci-examples/`: the workflows parse as YAML, say what their comments promise, and the
//! `cargo record-test` / `cargo replay-artifact` command lines in their `run:` and
//! `script:` entries run against a copy of the example crate (the repository a user
//! would have), with `--max-runs` made small.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::common::{copy_example, Run, Sandbox};

/// `--max-runs` in the examples becomes this. Without `--per-test`, one run is the
/// whole test binary, which passes only if all five flaky tests pass at once
/// (temp_file_race alone failed 1000 of 1000 runs; without it, at most
/// 0.67 × 0.56 × 0.6 × 0.6 = 0.135): a hunt of 12 runs misses with probability
/// below 0.135^12 ≈ 4e-11.
const SMALL_MAX_RUNS: &str = "12";

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ci-examples")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// The `cargo record-test` / `cargo replay-artifact` commands of a shell script: lines
/// joined at `\`, each command cut at `;`, `|`, `&&`, `)` outside quotes.
fn cargo_chaos_commands(script: &str) -> Vec<String> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let mut rest = line;
        while let Some(at) = ["cargo record-test", "cargo replay-artifact"]
            .iter()
            .filter_map(|c| rest.find(c))
            .min()
        {
            let cmd = &rest[at..];
            let (mut quote, mut end) = (None, cmd.len());
            for (i, ch) in cmd.char_indices() {
                match (quote, ch) {
                    (None, '"' | '\'') => quote = Some(ch),
                    (Some(q), c) if c == q => quote = None,
                    (None, ';' | '|' | '&' | ')') => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            out.push(cmd[..end].trim().to_string());
            rest = &cmd[end..];
        }
    }
    out
}

/// Splits a command into words, expanding `${{ expr }}` and `$NAME` from `vars` (an
/// unknown one fails the test: the example uses something this test does not know).
fn words(cmd: &str, vars: &HashMap<&str, String>) -> Vec<String> {
    let expr = regex::Regex::new(r"\$\{\{\s*([^}]*?)\s*\}\}").unwrap();
    let var = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").unwrap();
    let lookup = |name: &str| {
        vars.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("`{cmd}` uses {name}, unknown to this test"))
    };
    let cmd = expr.replace_all(cmd, |c: &regex::Captures| lookup(&c[1]));
    let mut words = Vec::new();
    let (mut cur, mut quote, mut any) = (String::new(), None, false);
    for ch in cmd.chars() {
        match (quote, ch) {
            (None, '"' | '\'') => {
                quote = Some(ch);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in `{cmd}`");
    if any {
        words.push(cur);
    }
    words
        .into_iter()
        .map(|w| {
            var.replace_all(&w, |c: &regex::Captures| lookup(&c[1]))
                .into_owned()
        })
        .collect()
}

/// A user's repository: a copy of the example crate.
fn repository(sb: &Sandbox) -> PathBuf {
    let repo = sb.path("repo");
    copy_example(&repo);
    repo
}

/// Runs `cargo record-test ARGS` from the example in `repo`, with `--max-runs` made small
/// and `s3://` uploads sent to a directory instead. `github` sets the Actions variables
/// (the files are in the sandbox). Returns the run and the archives it reported.
fn run_record_test(
    sb: &Sandbox,
    repo: &Path,
    args: &[String],
    github: bool,
) -> (Run, Vec<PathBuf>) {
    let mut args = args.to_vec();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--max-runs" => args[i + 1] = SMALL_MAX_RUNS.into(),
            "--upload" if args[i + 1].starts_with("s3://") => {
                let key = args[i + 1].trim_start_matches("s3://").to_string();
                args[i + 1] = format!("file://{}/", sb.path("s3").join(key).display());
            }
            _ => {}
        }
        i += 1;
    }
    let mut cmd = sb.record_test_cmd(&args);
    cmd.current_dir(repo).env("CI", "true");
    if github {
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", sb.path("github_output"))
            .env("GITHUB_STEP_SUMMARY", sb.path("step_summary.md"));
    }
    let run = Run::of(cmd);
    let archives = run
        .stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Captured "))
        .map(|l| PathBuf::from(l.rsplit_once(" (").map(|(p, _)| p).unwrap_or(l)))
        .collect();
    (run, archives)
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v:?}"))
}

#[test]
fn github_actions_workflow() {
    let wf = load("github-actions.yml");
    assert!(
        wf["on"]["schedule"][0]["cron"].is_string(),
        "a scheduled hunt: {:?}",
        wf["on"]
    );
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    let job = |name: &str| jobs.get(name).unwrap_or_else(|| panic!("job {name}"));
    let steps = |name: &str| job(name)["steps"].as_sequence().expect("steps").clone();

    // Each job's commands, in order.
    let commands = |name: &str| -> Vec<String> {
        steps(name)
            .iter()
            .filter_map(|st| st["run"].as_str())
            .flat_map(cargo_chaos_commands)
            .collect()
    };
    let uploads = |name: &str| -> Vec<Value> {
        steps(name)
            .into_iter()
            .filter(|st| {
                st["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
            })
            .collect()
    };

    let sb = Sandbox::new();
    let repo = repository(&sb);
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert("github.run_id", "4242".into());
    vars.insert("CHAOS_S3_BUCKET", "flaky-bucket".into());
    vars.insert("steps.capture.outputs.archive", String::new());

    // `hunt`: a hunt; its archives are uploaded from the directory it writes to.
    let hunt = commands("hunt");
    assert_eq!(hunt.len(), 1, "{hunt:?}");
    let hunt_words = words(&hunt[0], &vars);
    assert!(
        hunt_words.iter().any(|w| w == "--until-fail"),
        "{hunt_words:?}"
    );
    let (run, archives) = run_record_test(&sb, &repo, &hunt_words[2..], true);
    run.expect_status(1);
    assert!(!archives.is_empty(), "{}", run.show());
    let up = uploads("hunt");
    assert_eq!(up.len(), 1, "one upload step in hunt");
    let artifact_dir = repo.join(s(&up[0]["with"]["path"]));
    for a in &archives {
        assert!(
            a.starts_with(&artifact_dir),
            "{} is under the uploaded path {}",
            a.display(),
            artifact_dir.display()
        );
        assert!(a.is_file(), "{}", a.display());
    }
    // The upload step's condition reads the step output the tool writes.
    assert!(
        s(&up[0]["if"]).contains("steps.hunt.outputs.archive"),
        "{:?}",
        up[0]["if"]
    );
    let outputs = std::fs::read_to_string(sb.path("github_output")).expect("GITHUB_OUTPUT written");
    assert!(
        outputs.lines().any(|l| l.starts_with("archive=")),
        "{outputs}"
    );
    let summary =
        std::fs::read_to_string(sb.path("step_summary.md")).expect("GITHUB_STEP_SUMMARY written");
    assert!(summary.contains("cargo replay-artifact"), "{summary}");

    // `replay-check`: the artifact downloaded into a fresh directory, each archive replayed.
    let dl = steps("replay-check")
        .into_iter()
        .find(|st| {
            st["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/download-artifact@"))
        })
        .expect("a download step");
    assert_eq!(
        s(&dl["with"]["name"]),
        s(&up[0]["with"]["name"]),
        "downloads what hunt uploaded"
    );
    let downloaded = repo.join(s(&dl["with"]["path"]));
    std::fs::create_dir_all(&downloaded).unwrap();
    for a in &archives {
        std::fs::copy(a, downloaded.join(a.file_name().unwrap())).unwrap();
    }
    std::fs::remove_dir_all(repo.join("target")).unwrap();
    let replays = commands("replay-check");
    assert_eq!(replays.len(), 1, "{replays:?}");
    for a in std::fs::read_dir(&downloaded).unwrap() {
        let a = a.unwrap().path();
        vars.insert("archive", a.display().to_string());
        let w = words(&replays[0], &vars);
        assert_eq!(&w[..2], ["cargo", "replay-artifact"]);
        let mut cmd = sb.replay_cmd(&w[2..]);
        cmd.current_dir(&repo);
        Run::of(cmd).expect_status(101);
    }

    // `test`: the capture after a failing `cargo test`; its upload takes the step output.
    let capture = commands("test");
    assert_eq!(capture.len(), 1, "{capture:?}");
    let _ = std::fs::remove_file(sb.path("github_output"));
    let (run, archives) = run_record_test(&sb, &repo, &words(&capture[0], &vars)[2..], true);
    run.expect_status(1);
    assert_eq!(
        archives.len(),
        1,
        "stops at the first failure\n{}",
        run.show()
    );
    let up = uploads("test");
    assert_eq!(
        s(&up[0]["with"]["path"]),
        "${{ steps.capture.outputs.archive }}"
    );
    let outputs = std::fs::read_to_string(sb.path("github_output")).unwrap();
    assert!(
        outputs
            .lines()
            .any(|l| l == format!("archive={}", archives[0].display())),
        "{outputs}"
    );

    // `hunt-s3`: credentials from secrets, the archive uploaded (here to a directory).
    let env = &job("hunt-s3")["env"];
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert_eq!(
            s(&env[k]),
            format!("${{{{ secrets.{k} }}}}"),
            "{k} from the repository's secrets"
        );
    }
    let s3 = commands("hunt-s3");
    assert_eq!(s3.len(), 1, "{s3:?}");
    let w = words(&s3[0], &vars);
    let upload = w
        .iter()
        .position(|x| x == "--upload")
        .map(|i| w[i + 1].clone())
        .expect("--upload");
    assert_eq!(upload, "s3://flaky-bucket/flaky/4242/");
    let (run, archives) = run_record_test(&sb, &repo, &w[2..], true);
    run.expect_status(1);
    let uploaded = sb
        .path("s3/flaky-bucket/flaky/4242")
        .join(archives[0].file_name().unwrap());
    assert!(
        uploaded.is_file(),
        "{} uploaded\n{}",
        uploaded.display(),
        run.show()
    );
}

#[test]
fn gitlab_ci_jobs() {
    let ci = load("gitlab-ci.yml");
    let sb = Sandbox::new();
    let repo = repository(&sb);
    let vars = HashMap::new();
    let mut ran = 0;
    for job in ["flake-hunt", "test"] {
        let j = &ci[job];
        let paths: Vec<&str> = j["artifacts"]["paths"]
            .as_sequence()
            .expect("artifacts:paths")
            .iter()
            .map(s)
            .collect();
        assert_eq!(paths, ["target/chaos/archives/"], "{job}");
        let when = s(&j["artifacts"]["when"]);
        assert!(
            when == "always" || when == "on_failure",
            "{job}: artifacts:when {when}"
        );
        let script: Vec<&str> = j["script"]
            .as_sequence()
            .expect("script")
            .iter()
            .map(s)
            .collect();
        for cmd in script.iter().flat_map(|l| cargo_chaos_commands(l)) {
            let w = words(&cmd, &vars);
            assert_eq!(&w[..2], ["cargo", "record-test"], "{cmd}");
            let _ = std::fs::remove_dir_all(repo.join("target/chaos"));
            let (run, archives) = run_record_test(&sb, &repo, &w[2..], false);
            run.expect_status(1);
            assert!(!archives.is_empty(), "{}", run.show());
            for a in &archives {
                assert!(
                    a.starts_with(repo.join(paths[0])),
                    "{} is where artifacts:paths looks",
                    a.display()
                );
            }
            // The replay command is in the log, naming the archive.
            for a in &archives {
                assert!(
                    run.stderr
                        .contains(&format!("cargo replay-artifact {}", a.display())),
                    "{}",
                    run.show()
                );
            }
            // Plain progress lines with CI set, no progress bar.
            assert!(run.stderr.contains("Recording "), "{}", run.show());
            ran += 1;
        }
    }
    assert_eq!(ran, 2, "two record-test commands");
}

#[test]
fn command_extraction() {
    let script = "cargo test || (cargo record-test --workspace \\\n  --max-runs 5; exit 1)\nfor a in x; do\n  cargo replay-artifact \"$archive\" || status=$?\ndone";
    assert_eq!(
        cargo_chaos_commands(script),
        [
            "cargo record-test --workspace    --max-runs 5",
            "cargo replay-artifact \"$archive\""
        ]
    );
    let vars = HashMap::from([
        ("archive", "/a b/c".to_string()),
        ("github.run_id", "7".to_string()),
    ]);
    assert_eq!(
        words(
            "cargo replay-artifact \"$archive\" s3://x/${{ github.run_id }}/",
            &vars
        ),
        ["cargo", "replay-artifact", "/a b/c", "s3://x/7/"]
    );
}

/// Every `actions/checkout` step of the GitHub workflow sets `persist-credentials: false`:
/// otherwise checkout leaves the job's token in `.git/config` (as an `extraheader`), where
/// a test that reads the repository's configuration puts it into a recording.
#[test]
fn checkout_leaves_no_credentials() {
    let wf = load("github-actions.yml");
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    let mut checkouts = 0;
    for (name, job) in jobs {
        for step in job["steps"].as_sequence().expect("steps") {
            if step["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/checkout@"))
            {
                checkouts += 1;
                assert_eq!(
                    step["with"]["persist-credentials"].as_bool(),
                    Some(false),
                    "job {}: actions/checkout must set `persist-credentials: false`: {step:?}",
                    s(name)
                );
            }
        }
    }
    assert!(checkouts >= 3, "the jobs check out the repository");
}
