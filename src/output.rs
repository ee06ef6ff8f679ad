//! Rendering: data to stdout as a table for people or one JSON document for
//! machines; progress bars and confirmations on stderr.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::ValueEnum;
use comfy_table::{presets, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    pub quiet: bool,
    pub verbose: u8,
}

impl Output {
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints the report: `json` as one document, or the human rendering.
    /// Its counts are kept for the run history ([`report_counts`]).
    pub fn emit(&self, json: &serde_json::Value, human: impl FnOnce() -> String) -> Result<()> {
        *REPORT.lock().unwrap_or_else(|e| e.into_inner()) = Some(counts(json));
        let mut stdout = std::io::stdout().lock();
        match self.format {
            Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(json)?)?,
            Format::Table => {
                let text = human();
                if !text.is_empty() {
                    writeln!(stdout, "{}", text.trim_end())?;
                }
            }
        }
        stdout.flush()?;
        Ok(())
    }

    /// A log line on stderr (suppressed by `-q` and in JSON mode's quiet).
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// A detail line on stderr, shown with `-v`.
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// A progress bar on stderr; hidden when stderr is not a terminal or `-q`.
    pub fn progress(&self, len: Option<u64>, msg: &str) -> ProgressBar {
        let pb = match len {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        if self.quiet || !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style = match len {
            Some(_) => ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
            ),
            None => ProgressStyle::with_template("{spinner} {msg} {human_pos} ({elapsed})"),
        };
        if let Ok(style) = style {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg.to_string());
        pb
    }
}

/// The counts of the last report this process printed (`None`: none yet).
static REPORT: std::sync::Mutex<Option<serde_json::Value>> = std::sync::Mutex::new(None);

/// The counts of the last report printed: `Some` also says a report is on
/// stdout already (so a failure adds no second JSON document).
pub fn report_counts() -> Option<serde_json::Value> {
    REPORT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The numbers and flags of a report, for the run history: its top-level
/// numbers and booleans, and those one object level down (`{"stitched":
/// {"events": 5}}` keeps `{"stitched": {"events": 5}}`); lists, texts and
/// deeper levels are left out so a row stays small.
pub fn counts(report: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value};
    fn scalars(o: &Map<String, Value>) -> Map<String, Value> {
        o.iter()
            .filter(|(_, v)| v.is_number() || v.is_boolean())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    let Value::Object(o) = report else {
        return Value::Object(Map::new());
    };
    let mut out = scalars(o);
    for (k, v) in o {
        if let Value::Object(inner) = v {
            let s = scalars(inner);
            if !s.is_empty() {
                out.insert(k.clone(), Value::Object(s));
            }
        }
    }
    Value::Object(out)
}

/// A table with headers, in the house style.
pub fn table<I, S>(headers: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers);
    t
}

/// Asks before a destructive step. With `--yes` it proceeds; without a
/// terminal it refuses; a "no" (the default) is an error.
pub fn confirm(prompt: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        anyhow::bail!("{prompt} — refusing without confirmation: no terminal to ask on; pass --yes to proceed");
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(prompt)
        .default(false)
        .interact()?;
    if !ok {
        anyhow::bail!("aborted: nothing was changed");
    }
    Ok(())
}

/// [`confirm`] for a step that changes the database `target`
/// (`host/dbname`), which the prompt names.
pub fn confirm_db(target: &str, prompt: &str, yes: bool) -> Result<()> {
    confirm(&format!("database {target}: {prompt}"), yes)
}

/// Formats a count with thousands separators.
pub fn num(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}
