//! `cdpctl completions SHELL`.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    pub shell: Shell,
}

pub fn run(args: Args) -> Result<()> {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "cdpctl", &mut std::io::stdout());
    Ok(())
}

/// The completion script for `shell`, as committed under `completions/`.
pub fn generate(shell: Shell) -> Vec<u8> {
    let mut cmd = crate::cli::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cdpctl", &mut buf);
    buf
}

/// File name of the committed completion for `shell`.
pub fn file_name(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "cdpctl.bash",
        Shell::Zsh => "_cdpctl",
        Shell::Fish => "cdpctl.fish",
        Shell::Elvish => "cdpctl.elv",
        Shell::PowerShell => "_cdpctl.ps1",
        _ => "cdpctl.other",
    }
}
