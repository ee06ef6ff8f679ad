//! Records the git commit the binary is built from, for `cdpctl --version`:
//! `CDPCTL_VERSION` (`0.1.0 (eb3a6bf)`) and `CDPCTL_GIT_COMMIT`, the short
//! hash with `-dirty` when the sources that go into the binary differ from
//! it, or `unknown` outside a git checkout (a source tarball) or without git.
//! Packagers can set `CDPCTL_GIT_COMMIT` themselves.
//!
//! Reruns only when the commit can have changed (HEAD, the branch it points
//! to, packed refs) or a source did (which recompiles the crate anyway), so
//! an unchanged tree does not rebuild.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What goes into the binary: a change here makes the build `-dirty`.
const SOURCES: &[&str] = &[
    "build.rs",
    "Cargo.toml",
    "Cargo.lock",
    "src",
    "sql",
    "package.json",
    "package-lock.json",
];

fn main() {
    println!("cargo:rerun-if-env-changed=CDPCTL_GIT_COMMIT");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // (a path that does not exist would rerun the script on every build)
    for s in SOURCES.iter().filter(|s| here.join(s).exists()) {
        println!("cargo:rerun-if-changed={s}");
    }
    let commit = match std::env::var("CDPCTL_GIT_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => from_git().unwrap_or_else(|| "unknown".into()),
    };
    let shown = if commit == "unknown" {
        "commit unknown".to_string()
    } else {
        commit.clone()
    };
    println!("cargo:rustc-env=CDPCTL_GIT_COMMIT={commit}");
    println!(
        "cargo:rustc-env=CDPCTL_VERSION_SOURCES={}",
        SOURCES.join(" ")
    );
    println!(
        "cargo:rustc-env=CDPCTL_VERSION={} ({shown})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
}

/// Runs git in the package directory; `None` when it fails or is missing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // never write the index (a build must not race the user's git)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn from_git() -> Option<String> {
    // the package must be the top of the checkout: a tarball unpacked
    // inside some other repository is not that repository's commit
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if top.canonicalize().ok()? != here.canonicalize().ok()? {
        return None;
    }
    // HEAD, the branch it names and packed-refs (worktrees keep HEAD apart
    // from the refs: ask git for each path)
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in &watch {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            let path = here.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let hash = git(&["rev-parse", "--short", "HEAD"])?;
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = !git(&status)?.is_empty();
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}
