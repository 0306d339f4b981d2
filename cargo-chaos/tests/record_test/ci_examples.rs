//! `ci-examples/`: the workflows parse as YAML, say what their comments promise, and the
//! `cargo record-test` / `cargo replay-artifact` command lines in their `run:` and
//! `script:` entries run against a copy of the example crate (the repository a user
//! would have), with `--max-runs` made small. Also (issue 18): one variable says where
//! to install from, with `--locked` and a cache; the matrix shards (`--partition`)
//! together hunt every test once; the JUnit report is where the CI reads it; the job
//! summary gets the replay command with the artifact's URL; an S3 upload that fails
//! falls back to a workflow artifact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::common::{copy_example, Run, Sandbox};

/// `--max-runs` in the examples becomes this. Without `--per-test`, one run is the
/// whole test binary (or a shard's tests in one process). A shard holding
/// hashmap_order fails at least 44% of its runs (flaky.rs): 40 runs miss with
/// probability below 0.56^40 ≈ 1e-10; the whole binary fails more often still.
const SMALL_MAX_RUNS: &str = "40";

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
/// joined at `\`, each command cut at `;`, `|`, `&&`, `)` outside quotes; `echo` lines
/// skipped.
fn cargo_chaos_commands(script: &str) -> Vec<String> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    // A line that prints a command (`echo "cargo replay-artifact ..."`) runs none.
    for line in joined
        .lines()
        .filter(|l| !l.trim_start().starts_with("echo "))
    {
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
/// and `s3://` uploads sent to a directory in the sandbox instead. `github` sets the
/// Actions variables (the files are in the sandbox). Returns the run and the archives
/// it reported.
fn run_record_test(
    sb: &Sandbox,
    repo: &Path,
    args: &[String],
    github: bool,
) -> (Run, Vec<PathBuf>) {
    run_record_test_s3(sb, repo, args, github, &sb.path("s3"))
}

/// [`run_record_test`], `s3://BUCKET/KEY` going to `file://<s3_root>/BUCKET/KEY`.
fn run_record_test_s3(
    sb: &Sandbox,
    repo: &Path,
    args: &[String],
    github: bool,
    s3_root: &Path,
) -> (Run, Vec<PathBuf>) {
    let mut args = args.to_vec();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--max-runs" => args[i + 1] = SMALL_MAX_RUNS.into(),
            "--upload" if args[i + 1].starts_with("s3://") => {
                let key = args[i + 1].trim_start_matches("s3://").to_string();
                args[i + 1] = format!("file://{}/", s3_root.join(key).display());
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
        .stderr_str()
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

/// The JUnit report at `path`: its testcases as `classname::name`.
fn junit_cases(path: &Path) -> Vec<String> {
    let xml = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading the JUnit report {}: {e}", path.display()));
    let (_, cases) = super::junit::read_report(&xml);
    cases
        .iter()
        .map(|(name, c)| format!("{}::{name}", c.classname))
        .collect()
}

/// The example crate's 8 tests, as the JUnit report names them.
fn all_example_tests() -> Vec<String> {
    let mut v: Vec<String> = [
        "always_passes",
        "channel_interleaving",
        "child_process",
        "hashmap_order",
        "mutex_interleaving",
        "temp_file_race_a",
        "temp_file_race_b",
        "wall_clock",
    ]
    .iter()
    .map(|t| format!("flaky-example/flaky_example::tests::{t}"))
    .collect();
    v.sort();
    v
}

/// The value after `flag` in `words`.
fn flag_value(words: &[String], flag: &str) -> String {
    let i = words
        .iter()
        .position(|w| w == flag)
        .unwrap_or_else(|| panic!("{flag} in {words:?}"));
    words[i + 1].clone()
}

/// Whether `name` matches a glob whose only wildcard is one `*`.
fn glob_match(glob: &str, name: &str) -> bool {
    match glob.split_once('*') {
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
        None => glob == name,
    }
}

/// Whether `path` (under `repo`) is matched by an upload step's `path` glob.
fn glob_covers(repo: &Path, glob: &str, path: &Path) -> bool {
    let (dir, file) = glob.rsplit_once('/').unwrap_or(("", glob));
    let file = if file.is_empty() { "*" } else { file };
    path.parent() == Some(&*repo.join(dir))
        && glob_match(file, &path.file_name().unwrap().to_string_lossy())
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
    let uses = |name: &str, action: &str| -> Vec<Value> {
        steps(name)
            .into_iter()
            .filter(|st| {
                st["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&format!("{action}@")))
            })
            .collect()
    };

    // Installing: one variable at the top, --locked, the binaries cached under it, and
    // the install skipped on a cache hit, in every job that uses the tool.
    let install = s(&wf["env"]["CARGO_CHAOS_INSTALL"]);
    assert!(install.ends_with(" cargo-chaos"), "{install}");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci-examples/github-actions.yml"),
    )
    .unwrap();
    for line in text.lines().filter(|l| l.contains("cargo install ")) {
        let l = line.trim();
        assert!(
            l.starts_with('#') || l == "run: cargo install --locked $CARGO_CHAOS_INSTALL",
            "every install takes CARGO_CHAOS_INSTALL, with --locked: {l}"
        );
    }
    let mut jobs_with_tool = 0;
    for (name, _) in jobs {
        let name = s(name);
        let st = steps(name);
        let first_use = st.iter().position(|x| {
            x["run"]
                .as_str()
                .is_some_and(|r| !cargo_chaos_commands(r).is_empty())
        });
        let Some(first_use) = first_use else { continue };
        jobs_with_tool += 1;
        let cache = st
            .iter()
            .position(|x| {
                x["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/cache@"))
            })
            .unwrap_or_else(|| panic!("{name}: a cache step"));
        let inst = st
            .iter()
            .position(|x| {
                x["run"]
                    .as_str()
                    .is_some_and(|r| r.contains("cargo install"))
            })
            .unwrap_or_else(|| panic!("{name}: an install step"));
        assert!(
            cache < inst && inst < first_use,
            "{name}: cache, install, use"
        );
        let c = &st[cache];
        assert!(
            s(&c["with"]["key"]).contains("${{ env.CARGO_CHAOS_INSTALL }}"),
            "{name}: the cache is keyed by where it installs from"
        );
        for bin in ["cargo-chaos", "cargo-record-test", "cargo-replay-artifact"] {
            assert!(
                s(&c["with"]["path"]).contains(&format!("~/.cargo/bin/{bin}")),
                "{name}: caches {bin}"
            );
        }
        let id = s(&c["id"]);
        assert!(
            s(&st[inst]["if"]).contains(&format!("steps.{id}.outputs.cache-hit != 'true'")),
            "{name}: installs only on a cache miss"
        );
    }
    assert_eq!(jobs_with_tool, 4, "hunt, test, replay-check, hunt-s3");
    // The jobs that record allow software perf events (the desched event, CPU-time
    // slices): GitHub's runners refuse them by default.
    assert_eq!(
        text.matches("run: sudo sysctl kernel.perf_event_paranoid=1")
            .count(),
        3,
        "hunt, test, hunt-s3"
    );

    let sb = Sandbox::new();
    let repo = repository(&sb);
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert("github.run_id", "4242".into());
    vars.insert("CHAOS_S3_BUCKET", "flaky-bucket".into());
    vars.insert("steps.capture.outputs.archive", String::new());

    // `hunt`: a matrix of shards; each hunts its part of the tests, writes a JUnit report
    // and uploads its archives from the directory it writes to.
    let hunt_job = job("hunt");
    assert_eq!(hunt_job["strategy"]["fail-fast"].as_bool(), Some(false));
    let shards: Vec<u64> = hunt_job["strategy"]["matrix"]["shard"]
        .as_sequence()
        .expect("a shard matrix")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let hunt = commands("hunt");
    assert_eq!(hunt.len(), 1, "{hunt:?}");
    let up = uses("hunt", "actions/upload-artifact");
    assert_eq!(up.len(), 1, "one upload step in hunt");
    let upload_id = s(&up[0]["id"]).to_string();
    // The upload step's condition reads the step output the tool writes.
    assert!(
        s(&up[0]["if"]).contains("steps.hunt.outputs.archive"),
        "{:?}",
        up[0]["if"]
    );
    let summary_step = steps("hunt")
        .into_iter()
        .find(|st| st["env"]["ARTIFACT_URL"].is_string())
        .expect("a step that puts the artifact's URL in the summary");
    assert_eq!(
        s(&summary_step["env"]["ARTIFACT_URL"]),
        format!("${{{{ steps.{upload_id}.outputs.artifact-url }}}}")
    );
    let report = uses("hunt", "mikepenz/action-junit-report");
    assert_eq!(report.len(), 1, "a test-report step");
    let downloaded = repo.join("downloaded");
    let mut hunted = Vec::new();
    let mut captures = 0;
    let artifact_url = "https://github.com/o/r/actions/runs/4242/artifacts/77";
    for shard in &shards {
        vars.insert("matrix.shard", shard.to_string());
        let w = words(&hunt[0], &vars);
        assert!(w.iter().any(|x| x == "--until-fail"), "{w:?}");
        assert_eq!(
            flag_value(&w, "--partition"),
            format!("hash:{shard}/{}", shards.len())
        );
        let junit = flag_value(&w, "--junit");
        assert_eq!(s(&report[0]["with"]["report_paths"]), junit);
        // Each shard is a machine of its own.
        let _ = std::fs::remove_dir_all(repo.join("target/chaos"));
        let _ = std::fs::remove_file(sb.path("github_output"));
        let _ = std::fs::remove_file(sb.path("step_summary.md"));
        let (run, archives) = run_record_test(&sb, &repo, &w[2..], true);
        assert!(run.status == 0 || run.status == 1, "{}", run.show());
        hunted.extend(junit_cases(&repo.join(&junit)));
        if run.status == 0 {
            continue;
        }
        captures += 1;
        assert!(!archives.is_empty(), "{}", run.show());
        let name = s(&up[0]["with"]["name"]).replace("${{ matrix.shard }}", &shard.to_string());
        let glob = s(&up[0]["with"]["path"]);
        for a in &archives {
            assert!(
                glob_covers(&repo, glob, a),
                "{} is matched by the uploaded path {glob}",
                a.display()
            );
            assert!(a.is_file(), "{}", a.display());
            // download-artifact with merge-multiple: every shard's archives in one place.
            std::fs::create_dir_all(&downloaded).unwrap();
            std::fs::copy(a, downloaded.join(a.file_name().unwrap())).unwrap();
        }
        let outputs =
            std::fs::read_to_string(sb.path("github_output")).expect("GITHUB_OUTPUT written");
        assert!(
            outputs.lines().any(|l| l.starts_with("archive=")),
            "{outputs}"
        );
        // The summary step, run as written once the artifact is uploaded: the replay
        // command names the artifact's URL and each archive.
        let script = s(&summary_step["run"]);
        let status = std::process::Command::new("bash")
            .args(["-e", "-c", script])
            .current_dir(&repo)
            .env("ARTIFACT_URL", artifact_url)
            .env("GITHUB_STEP_SUMMARY", sb.path("step_summary.md"))
            .status()
            .unwrap();
        assert!(status.success());
        let summary = std::fs::read_to_string(sb.path("step_summary.md")).unwrap();
        for a in &archives {
            let line = format!(
                "cargo replay-artifact '{artifact_url}#{}'",
                a.file_name().unwrap().to_string_lossy()
            );
            assert!(summary.contains(&line), "{line} in\n{summary}");
        }
        // The download of `replay-check` takes every shard's artifact.
        let dl = uses("replay-check", "actions/download-artifact");
        assert!(
            glob_match(s(&dl[0]["with"]["pattern"]), &name),
            "{name} is downloaded"
        );
        assert_eq!(dl[0]["with"]["merge-multiple"].as_bool(), Some(true));
    }
    assert!(captures > 0, "a shard captured something");
    hunted.sort();
    assert_eq!(
        hunted,
        all_example_tests(),
        "the shards together hunt every test exactly once"
    );

    // `replay-check`: every shard's archives, replayed on a fresh checkout.
    let dl = uses("replay-check", "actions/download-artifact");
    let fresh = repo.join(s(&dl[0]["with"]["path"]));
    std::fs::rename(&downloaded, &fresh).unwrap();
    std::fs::remove_dir_all(repo.join("target")).unwrap();
    let replays = commands("replay-check");
    assert_eq!(replays.len(), 1, "{replays:?}");
    for a in std::fs::read_dir(&fresh).unwrap() {
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
    assert!(!archives.is_empty(), "{}", run.show());
    let up = uses("test", "actions/upload-artifact");
    assert_eq!(
        s(&up[0]["with"]["path"]),
        "${{ steps.capture.outputs.archive }}"
    );
    let outputs = std::fs::read_to_string(sb.path("github_output")).unwrap();
    assert!(
        outputs
            .lines()
            .any(|l| l == format!("archive={}", archives.last().unwrap().display())),
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
    assert_eq!(flag_value(&w, "--upload"), "s3://flaky-bucket/flaky/4242/");
    let fallback = uses("hunt-s3", "actions/upload-artifact");
    assert_eq!(fallback.len(), 1, "a fallback upload step");
    let cond = s(&fallback[0]["if"]);
    assert!(
        cond.contains("steps.hunt.outputs.archive != ''")
            && cond.contains("steps.hunt.outputs.archive_url == ''"),
        "the fallback runs when a capture was not uploaded: {cond}"
    );
    let _ = std::fs::remove_dir_all(repo.join("target/chaos"));
    let _ = std::fs::remove_file(sb.path("github_output"));
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
    let outputs = std::fs::read_to_string(sb.path("github_output")).unwrap();
    assert!(
        outputs.lines().any(|l| l.starts_with("archive_url=")),
        "uploaded: the fallback does not run\n{outputs}"
    );
    // The upload fails (here: a directory that cannot be created): exit 2, the archive
    // stays on disk, the outputs make the fallback run, and its path takes the archive.
    let _ = std::fs::remove_dir_all(repo.join("target/chaos"));
    let _ = std::fs::remove_file(sb.path("github_output"));
    let (run, archives) =
        run_record_test_s3(&sb, &repo, &w[2..], true, Path::new("/proc/no-such-dir"));
    run.expect_status(2);
    let outputs = std::fs::read_to_string(sb.path("github_output")).unwrap();
    assert!(
        outputs.lines().any(|l| l.starts_with("archive="))
            && !outputs.lines().any(|l| l.starts_with("archive_url=")),
        "{outputs}\n{}",
        run.show()
    );
    assert!(!archives.is_empty(), "{}", run.show());
    for a in &archives {
        assert!(a.is_file(), "{} kept", a.display());
        assert!(glob_covers(&repo, s(&fallback[0]["with"]["path"]), a));
    }
}

#[test]
fn gitlab_ci_jobs() {
    let ci = load("gitlab-ci.yml");
    let sb = Sandbox::new();
    let repo = repository(&sb);

    // Installing: one variable, --locked, into a cached directory of the project; run
    // here with a stand-in cargo that notes what it is asked and installs nothing.
    let install = s(&ci["variables"]["CARGO_CHAOS_INSTALL"]).to_string();
    let base = &ci[".cargo-chaos"];
    let cached: Vec<&str> = base["cache"]["paths"]
        .as_sequence()
        .expect("cache:paths")
        .iter()
        .map(s)
        .collect();
    assert_eq!(cached, [".cargo-chaos/"]);
    let before: Vec<&str> = base["before_script"]
        .as_sequence()
        .expect("before_script")
        .iter()
        .map(s)
        .collect();
    let fake = sb.path("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = sb.path("cargo-calls");
    std::fs::write(
        fake.join("cargo"),
        "#!/bin/sh\necho \"$*\" >> \"$CARGO_LOG\"\nmkdir -p .cargo-chaos/bin\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fake.join("cargo"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let script = format!("{}\necho \"PATH=$PATH\"", before.join("\n"));
    let run_before = |spec: &str| {
        let path = format!(
            "{}:{}",
            fake.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(&repo)
            .env("PATH", path)
            .env("CARGO_LOG", &log)
            .env("CARGO_CHAOS_INSTALL", spec)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run_before(&install);
    assert!(
        out.contains(&format!("PATH={}/.cargo-chaos/bin:", repo.display())),
        "{out}"
    );
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        calls(),
        format!("install --locked --root .cargo-chaos {install}\n")
    );
    run_before(&install);
    assert_eq!(calls().lines().count(), 1, "the cache serves the next job");
    run_before("--version 9.9.9 cargo-chaos");
    assert_eq!(calls().lines().count(), 2, "a new source installs again");
    std::fs::remove_dir_all(repo.join(".cargo-chaos")).unwrap();

    let mut vars = HashMap::new();
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
        let junit = s(&j["artifacts"]["reports"]["junit"]);
        let script: Vec<&str> = j["script"]
            .as_sequence()
            .expect("script")
            .iter()
            .map(s)
            .collect();
        // `parallel: N` runs N copies, CI_NODE_INDEX 1..=N of CI_NODE_TOTAL.
        let nodes = j["parallel"].as_u64().unwrap_or(1);
        let mut hunted = Vec::new();
        for cmd in script.iter().flat_map(|l| cargo_chaos_commands(l)) {
            for node in 1..=nodes {
                vars.insert("CI_NODE_INDEX", node.to_string());
                vars.insert("CI_NODE_TOTAL", nodes.to_string());
                let w = words(&cmd, &vars);
                assert_eq!(&w[..2], ["cargo", "record-test"], "{cmd}");
                assert_eq!(flag_value(&w, "--junit"), junit, "{job}");
                if nodes > 1 {
                    assert_eq!(
                        flag_value(&w, "--partition"),
                        format!("hash:{node}/{nodes}")
                    );
                }
                let _ = std::fs::remove_dir_all(repo.join("target/chaos"));
                let (run, archives) = run_record_test(&sb, &repo, &w[2..], false);
                assert!(run.status == 0 || run.status == 1, "{}", run.show());
                hunted.extend(junit_cases(&repo.join(junit)));
                for a in &archives {
                    assert!(
                        a.starts_with(repo.join(paths[0])),
                        "{} is where artifacts:paths looks",
                        a.display()
                    );
                    // The replay command is in the log, naming the archive.
                    assert!(
                        run.stderr_str()
                            .contains(&format!("cargo replay-artifact {}", a.display())),
                        "{}",
                        run.show()
                    );
                }
                if nodes == 1 {
                    // The whole suite: it fails (see SMALL_MAX_RUNS).
                    run.expect_status(1);
                }
                if run.status == 1 {
                    assert!(!archives.is_empty(), "{}", run.show());
                }
                // Plain progress lines with CI set, no progress bar.
                assert!(run.stderr_str().contains("Recording "), "{}", run.show());
                ran += 1;
            }
        }
        hunted.sort();
        assert_eq!(hunted, all_example_tests(), "{job}: every test hunted once");
    }
    assert_eq!(ran, 4, "three flake-hunt shards and the test job");
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
