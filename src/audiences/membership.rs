//! The membership query the serving side (DES) runs: which of these
//! campaigns contain this contact, with their program runs. During the
//! transition it reads both structures (UNION ALL, as the serving side
//! does); for a migrated campaign only the contact-id table plus the
//! references recorded as unmapped. A campaign found in several places is
//! answered once, with the union of its program runs, so the answer is the
//! same before, during and after the campaign's migration.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Serialize;

use super::merge::union;
use crate::db::{Db, PgResultExt};
use crate::dynamo::ContactMapper;

#[derive(Debug, Clone, Default)]
pub struct MembershipQuery {
    pub contact_id: Option<i64>,
    pub contact_reference: Option<String>,
    pub campaigns: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CampaignMembership {
    pub campaign_id: i64,
    pub rti_program_runs: Vec<i64>,
    pub ac_program_runs: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MembershipAnswer {
    pub contact_id: Option<i64>,
    pub contact_reference: Option<String>,
    /// given | dynamodb | not in dynamodb | unknown
    pub contact_id_source: String,
    /// The requested campaigns that contain the contact, by campaign id.
    pub campaigns: Vec<CampaignMembership>,
    /// Requested campaigns still (partly) in the legacy structure that could
    /// not be read because no contact reference was given.
    pub legacy_not_read: Vec<i64>,
}

/// Answers the membership query. Given only a reference, the contact id is
/// looked up in DynamoDB first (`mapper` must then be given).
pub async fn membership(
    db: &Db,
    mapper: Option<&ContactMapper>,
    q: &MembershipQuery,
) -> Result<MembershipAnswer> {
    if q.contact_id.is_none() && q.contact_reference.is_none() {
        bail!("give --contact-id and/or --contact-reference");
    }
    if q.campaigns.is_empty() {
        bail!("give at least one --campaign");
    }
    let (contact_id, source) = match (q.contact_id, &q.contact_reference) {
        (Some(id), _) => (Some(id), "given"),
        (None, Some(r)) => {
            let Some(mapper) = mapper else {
                bail!("a DynamoDB mapper is needed to look up the contact id of {r:?}");
            };
            match mapper.lookup(std::slice::from_ref(r)).await?.get(r) {
                Some(&id) => (Some(id), "dynamodb"),
                None => (None, "not in dynamodb"),
            }
        }
        (None, None) => unreachable!(),
    };
    let s = &db.schemas;
    let query = s.substitute(
        "WITH done AS (
             SELECT campaign_id FROM {{audience}}.audience_migrations
              WHERE state IN ('migrated', 'source_dropped') AND campaign_id = ANY($3))
         SELECT campaign_id, rti_program_runs, ac_program_runs
           FROM {{audience}}.campaign_contact_reference_master
          WHERE contact_reference = $2 AND campaign_id = ANY($3)
            AND campaign_id NOT IN (SELECT campaign_id FROM done)
         UNION ALL
         SELECT campaign_id, rti_program_runs, ac_program_runs
           FROM {{audience}}.campaign_contact_id_master
          WHERE contact_id = $1 AND campaign_id = ANY($3)
         UNION ALL
         SELECT campaign_id, rti_program_runs, ac_program_runs
           FROM {{audience}}.unmapped_contact_references
          WHERE contact_reference = $2 AND campaign_id = ANY($3)
            AND campaign_id IN (SELECT campaign_id FROM done)",
    );
    let rows = db
        .client
        .query(&query, &[&contact_id, &q.contact_reference, &q.campaigns])
        .await
        .pg_context(|| "running the membership query".into())?;
    let mut by_campaign: BTreeMap<i64, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for r in rows {
        let e = by_campaign.entry(r.get(0)).or_default();
        let rti: Vec<i64> = r.get::<_, Option<Vec<i64>>>(1).unwrap_or_default();
        let ac: Vec<i64> = r.get::<_, Option<Vec<i64>>>(2).unwrap_or_default();
        e.0 = union(&e.0, &rti);
        e.1 = union(&e.1, &ac);
    }
    let mut legacy_not_read = Vec::new();
    if q.contact_reference.is_none() {
        legacy_not_read = db
            .client
            .query(
                &s.substitute(
                    "SELECT c FROM unnest($1::bigint[]) c
                      WHERE NOT EXISTS (SELECT 1 FROM {{audience}}.audience_migrations m
                                         WHERE m.campaign_id = c AND m.state IN ('migrated', 'source_dropped'))
                        AND EXISTS (SELECT 1 FROM {{audience}}.campaign_contact_reference_master r
                                     WHERE r.campaign_id = c)
                      ORDER BY c",
                ),
                &[&q.campaigns],
            )
            .await
            .pg_context(|| "finding campaigns still in the legacy structure".into())?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
    }
    Ok(MembershipAnswer {
        contact_id,
        contact_reference: q.contact_reference.clone(),
        contact_id_source: source.to_string(),
        campaigns: by_campaign
            .into_iter()
            .map(|(campaign_id, (rti, ac))| CampaignMembership {
                campaign_id,
                rti_program_runs: rti,
                ac_program_runs: ac,
            })
            .collect(),
        legacy_not_read,
    })
}
