//! The README and docs/ link only to files and headings that exist; every
//! command the README shows runs, as printed, on the demo database; the
//! committed manual pages are current.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::*;

/// Pages that other parts of the project contribute; a link to them may
/// precede the page itself.
const CONTRIBUTED: &[&str] = &[];

fn pages(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            out.push(p);
        }
    }
    out
}

/// GitHub's anchors of a page's headings: lower case, punctuation dropped,
/// spaces as dashes.
fn anchors(text: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// The text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_and_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut broken = Vec::new();
    let pages = pages(root);
    assert!(pages.len() > 10, "docs/ holds the command pages");
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let name = page.strip_prefix(root).unwrap().display().to_string();
        for m in link.captures_iter(&prose(&text)) {
            let target = &m[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let Ok(file) = file.canonicalize() else {
                let rel = page.parent().unwrap().join(path);
                let rel = rel.strip_prefix(root).map(|p| p.display().to_string());
                let normalized = rel.unwrap_or_default().replace("docs/../", "");
                if !CONTRIBUTED.contains(&normalized.as_str()) {
                    broken.push(format!("{name}: {target} does not exist"));
                }
                continue;
            };
            if !fragment.is_empty() {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                if !anchors(&text).contains(fragment) {
                    broken.push(format!("{name}: {target} has no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lines = std::fs::read_to_string(root.join("README.md"))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; move reference text to docs/"
    );
}

#[test]
fn committed_man_pages_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages = cdpctl::commands::man::pages().unwrap();
    assert!(
        pages.iter().any(|(n, _)| n == "cdpctl-stitch-explain.1"),
        "a page per subcommand"
    );
    let bless = std::env::var("CDPCTL_BLESS").is_ok();
    let mut stale = Vec::new();
    for (name, text) in &pages {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_ref() != Some(text) {
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, text).unwrap();
            } else {
                stale.push(format!("man/{name} is stale or missing"));
            }
        }
    }
    // a page of a command that no longer exists
    for e in std::fs::read_dir(&dir).into_iter().flatten() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !pages.iter().any(|(n, _)| *n == name) {
            if bless {
                std::fs::remove_file(dir.join(&name)).unwrap();
            } else {
                stale.push(format!("man/{name} belongs to no command"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrun `CDPCTL_BLESS=1 cargo test --test docs committed_man` (or `rm -r man && cargo run -- man --out-dir man`)",
        stale.join("\n")
    );
}

/// README examples that cannot run in a test, by how they start, and why.
const SKIPPED: &[(&str, &str)] = &[(
    "cdpctl serve",
    "runs until stopped, on the fixed port 5010; tests/serve.rs runs it on free ports",
)];

/// What a few key examples must print (stdout), by how they start.
const EXPECTED: &[(&str, &str)] = &[
    ("cdpctl demo", "production switch"),
    ("cdpctl --database-url", "schema is up to date"),
    ("cdpctl stitch explain", "shortest link"),
    ("cdpctl calc-audiences --define", "saved 4 group(s)"),
    ("cdpctl migrate-audiences", "references processed"),
    ("cdpctl membership", "is in 2 of 4 campaign(s)"),
    ("cdpctl history-import", "10 change(s) valid"),
    ("cdpctl history-at", "Spring sale -20%"),
    ("cdpctl --yes go-production", "to production"),
];

/// A `cdpctl` command of the README: a `$ cdpctl ...` line of a console
/// block or a `cdpctl ...` line of an sh block.
#[derive(Debug)]
struct Example {
    line: usize,
    text: String,
    args: Vec<String>,
}

fn readme_examples(readme: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut block: Option<&str> = None;
    for (i, line) in readme.lines().enumerate() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            block = if block.is_some() {
                None
            } else {
                Some(lang.trim())
            };
            continue;
        }
        let command = match block {
            Some("console") => line.strip_prefix("$ "),
            Some("sh") => Some(line),
            _ => None,
        };
        let Some(command) = command else { continue };
        let words = shell_words(command);
        if words.first().map(String::as_str) != Some("cdpctl") {
            continue;
        }
        out.push(Example {
            line: i + 1,
            text: words.join(" "),
            args: words[1..].to_vec(),
        });
    }
    out
}

/// Splits a command line as sh does for the README's examples: blanks
/// separate words, quotes group, `#` starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[test]
fn readme_command_lines_are_split_as_sh_does() {
    assert_eq!(
        shell_words("cdpctl history-at --at '2024-03-05 14:00' --tz \"Europe/Berlin\"   # comment"),
        [
            "cdpctl",
            "history-at",
            "--at",
            "2024-03-05 14:00",
            "--tz",
            "Europe/Berlin"
        ]
    );
    let ex = readme_examples("```console\n$ cdpctl status   # lines\nout\n```\n```sh\nexport A=1\ncdpctl serve\n```\n```\ncdpctl no\n```\n");
    let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["cdpctl status", "cdpctl serve"]);
}

/// Every `cdpctl` command of the README, in order, on one demo database,
/// as a reader runs them: `DATABASE_URL` names the database, the config
/// file (`CDPCTL_CONFIG`) holds a `dynamodb` block for the DynamoDB
/// examples, pointing at a local dynalite that holds the demo's contact
/// mapping, and the working directory is the checkout (examples/...). Two
/// adjustments, both because a test has no terminal and no database of its
/// own at a fixed address: `cdpctl demo` runs first, into the test's
/// database, with `--yes` for its prompt (the throwaway-cluster form as
/// printed is `readme_demo_runs_as_printed`), and a `--database-url` value
/// is the test database's URL.
#[tokio::test(flavor = "multi_thread")]
async fn every_readme_example_runs_on_the_demo_database() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let examples = readme_examples(&readme);
    let t = TestDb::empty().await;
    let dynamo = dynamo::Dynalite::start().await;
    dynamo
        .load(cdpctl::demo::audiences::AudienceSpec::default().mappings())
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &serde_json::json!({"dynamodb": dynamo.config_json()}));
    let cdpctl = |args: &[String]| {
        let mut c = cli();
        c.env("DATABASE_URL", &t.url)
            .env("CDPCTL_CONFIG", &config)
            .current_dir(root)
            .args(args);
        run(&mut c)
    };

    let demo: Vec<&Example> = examples.iter().filter(|e| e.args == ["demo"]).collect();
    assert_eq!(demo.len(), 1, "the README shows `cdpctl demo` once");
    let mut ran = vec![(demo[0], cdpctl(&["--yes".into(), "demo".into()]))];
    for (prefix, _) in SKIPPED {
        assert!(
            examples.iter().any(|e| e.text.starts_with(prefix)),
            "skipped example `{prefix}` is no longer in the README: remove it from SKIPPED"
        );
    }
    for e in &examples {
        if e.args == ["demo"] || SKIPPED.iter().any(|(p, _)| e.text.starts_with(p)) {
            continue;
        }
        let mut args = e.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--database-url") {
            args[i + 1] = t.url.clone();
        }
        ran.push((e, cdpctl(&args)));
    }
    let mut failed = Vec::new();
    for (e, out) in &ran {
        if out.code != 0 {
            failed.push(format!(
                "README.md:{}: `{}` exited with {}:\n{}{}",
                e.line, e.text, out.code, out.stdout, out.stderr
            ));
        }
        for (prefix, expected) in EXPECTED {
            if e.text.starts_with(prefix) && !out.stdout.contains(expected) {
                failed.push(format!(
                    "README.md:{}: `{}` does not print {expected:?}:\n{}{}",
                    e.line, e.text, out.stdout, out.stderr
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    for (prefix, _) in EXPECTED {
        assert!(
            ran.iter().any(|(e, _)| e.text.starts_with(prefix)),
            "no README example starts with `{prefix}`"
        );
    }
    // every step of the demo ran (none skipped for a missing tool)
    let demo_out = &ran[0].1.stdout;
    assert!(!demo_out.contains("skipped"), "{demo_out}");
    assert!(
        ran.len() >= 14,
        "{} README examples ran; the extraction lost some",
        ran.len()
    );
}

/// `cdpctl demo` as the README prints it: no database given, so it starts a
/// throwaway cluster, runs every step and removes the cluster.
#[test]
fn readme_demo_runs_as_printed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(cli().arg("demo").current_dir(root));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("production switch"), "{}", out.stdout);
    assert!(!out.stdout.contains("skipped"), "{}", out.stdout);
    let cluster = regex::Regex::new(r"throwaway PostgreSQL cluster in (\S+)")
        .unwrap()
        .captures(&out.stderr)
        .unwrap_or_else(|| panic!("{}", out.stderr))[1]
        .to_string();
    assert!(
        !Path::new(&cluster).exists(),
        "{cluster} is left behind:\n{}",
        out.stderr
    );
}
