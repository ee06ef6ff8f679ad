//! `cdpctl man [COMMAND...]`: manual pages generated from the command line
//! (clap_mangen), one per command as `cdpctl-stitch.1` etc.; committed under
//! `man/` like the completions.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The command whose page to print (e.g. `stitch explain`); none: cdpctl.1
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Write every page into DIR (cdpctl.1, cdpctl-init.1, ...) instead of
    /// printing one
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let pages = pages()?;
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in &pages {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!(
            "wrote {} manual page(s) into {}",
            pages.len(),
            dir.display()
        );
        return Ok(());
    }
    let name = file_name(&args.command);
    let Some((_, text)) = pages.iter().find(|(n, _)| *n == name) else {
        bail!(
            "no manual page for `cdpctl {}`; `cdpctl --help` lists the commands",
            args.command.join(" ")
        );
    };
    use std::io::Write;
    std::io::stdout().write_all(text)?;
    Ok(())
}

/// The page of `cdpctl COMMAND...`: `cdpctl-stitch-explain.1`.
pub fn file_name(command: &[String]) -> String {
    let mut name = String::from("cdpctl");
    for c in command {
        name.push('-');
        name.push_str(c);
    }
    name + ".1"
}

/// Every manual page as (file name, roff text), as committed under `man/`:
/// cdpctl.1 and one page per visible command and subcommand. The pages show
/// the package version without the commit, so they change only when the
/// command line does.
pub fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = crate::cli::Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    collect(cmd, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub.clone(), out)?;
    }
    let man = clap_mangen::Man::new(cmd).source(concat!("cdpctl ", env!("CARGO_PKG_VERSION")));
    let mut text = Vec::new();
    man.render(&mut text)?;
    out.push((man.get_filename(), text));
    Ok(())
}
