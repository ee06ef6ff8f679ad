//! `cdpctl membership`: which of these campaigns contain a contact (the
//! query the serving side runs, reading both audience structures during the
//! transition).

use anyhow::Result;

use crate::audiences::{self, MembershipQuery};
use crate::dynamo::ContactMapper;
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The contact's id
    #[arg(long, value_name = "ID", required_unless_present = "contact_reference")]
    pub contact_id: Option<i64>,
    /// The contact's reference; alone, its contact id is looked up in DynamoDB
    #[arg(long, value_name = "REF")]
    pub contact_reference: Option<String>,
    /// Campaign to check (repeatable, or comma-separated)
    #[arg(long = "campaign", value_name = "ID", required = true, num_args = 1.., value_delimiter = ',')]
    pub campaigns: Vec<i64>,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let db = app.connect("membership").await?;
    db.require_initialized().await?;
    let mapper = if args.contact_id.is_none() {
        Some(ContactMapper::new(&app.config.dynamodb).await?)
    } else {
        None
    };
    let q = MembershipQuery {
        contact_id: args.contact_id,
        contact_reference: args.contact_reference,
        campaigns: args.campaigns,
    };
    let answer = audiences::membership(&db, mapper.as_ref(), &q).await?;
    app.out.emit(&serde_json::to_value(&answer)?, || {
        let who = match (&answer.contact_id, &answer.contact_reference) {
            (Some(id), Some(r)) => format!("contact {id} (reference {r}, id {})", answer.contact_id_source),
            (Some(id), None) => format!("contact {id}"),
            (None, Some(r)) => format!("reference {r} (no contact id: {})", answer.contact_id_source),
            (None, None) => String::new(),
        };
        let mut s = String::new();
        if answer.campaigns.is_empty() {
            s.push_str(&format!("{who} is in none of the {} campaign(s)\n", q.campaigns.len()));
        } else {
            let mut t = crate::output::table(["campaign", "rti program runs", "ac program runs"]);
            let join = |v: &[i64]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
            for c in &answer.campaigns {
                t.add_row(vec![c.campaign_id.to_string(), join(&c.rti_program_runs), join(&c.ac_program_runs)]);
            }
            s.push_str(&format!("{who} is in {} of {} campaign(s)\n{t}\n", answer.campaigns.len(), q.campaigns.len()));
        }
        if !answer.legacy_not_read.is_empty() {
            s.push_str(&format!(
                "note: campaign(s) {} are not fully migrated and no contact reference was given: their legacy rows were not read (add --contact-reference)\n",
                answer.legacy_not_read.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        s
    })
}
