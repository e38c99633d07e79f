//! De-identified exports (45 CFR §164.514): the vault reads and unseals an organization's
//! records, de-identifies them, audits the export as one event with counts (never contents),
//! and only then hands the result to the caller, which writes it out.
//!
//! Two methods:
//! - **Safe Harbor** (§164.514(b)(2)): the 18 identifier kinds are removed or generalized —
//!   only whitelisted elements are kept ([`rules`]); names, telecom, identifiers, photos,
//!   attachments, URLs and free text go; addresses keep state, country and the three-digit ZIP
//!   (`000` for the restricted areas); every date keeps its year only (instants, which cannot
//!   be a bare year, are dropped); a patient whose birth year allows an age of 90 or more loses
//!   the birth date and carries the extension [`rules::AGE_90_OR_OLDER`] instead, and ages of
//!   90 years or more (Age, Duration) are dropped.
//! - **Pseudonymized**: the same removals, but dates keep full precision, moved by the
//!   patient's own offset (±1..365 days, the same for all of a patient's records within the
//!   export), and ages are kept.
//!
//! In both, ids and references become pseudonyms: HMAC-SHA-256 under a fresh random pepper
//! made for this export and wiped after it ([`pseudonym`]), so two exports cannot be joined on
//! a pseudonym and neither can be joined to the vault.
mod clean;
mod dates;
mod output;
mod pseudonym;
pub mod rules;
#[cfg(test)]
mod tests;
mod zip3;

pub use output::DeidFormat;

use crate::error::VaultError;
use crate::{Ctx, Stored, Vault};
use phivault_core::{Digest32, RecordKey, StoreKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How to de-identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeidMethod {
    #[default]
    SafeHarbor,
    Pseudonymized,
}

impl DeidMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "safe-harbor" => Some(Self::SafeHarbor),
            "pseudonymized" => Some(Self::Pseudonymized),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::SafeHarbor => "safe-harbor",
            Self::Pseudonymized => "pseudonymized",
        }
    }
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct DeidOptions {
    pub method: DeidMethod,
    /// Resource types to export; empty means every type de-identified exports include.
    pub types: Vec<String>,
}

/// A de-identified export, by resource type. Its `Debug` shows counts only.
#[derive(Clone)]
pub struct DeidExport {
    pub method: DeidMethod,
    resources: BTreeMap<&'static str, Vec<Value>>,
    /// Records read but not exported, by reason: `type` (a type not exported or not asked
    /// for), `no-patient` (not about a patient), `incomplete` (would lack a required element).
    pub left_out: BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for DeidExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeidExport")
            .field("method", &self.method)
            .field("counts", &self.counts())
            .field("left_out", &self.left_out)
            .finish()
    }
}

impl DeidExport {
    /// How many resources of each type were exported.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.resources
            .iter()
            .map(|(t, v)| (*t, v.len() as u64))
            .collect()
    }

    /// How many resources were exported.
    pub fn total(&self) -> u64 {
        self.resources.values().map(|v| v.len() as u64).sum()
    }

    /// The exported resources of a type.
    pub fn resources(&self, rtype: &str) -> &[Value] {
        self.resources.get(rtype).map_or(&[], Vec::as_slice)
    }

    /// One file per resource type: (`Patient.ndjson`, its content), in type order.
    pub fn files(&self, format: DeidFormat) -> Vec<(String, String)> {
        self.resources
            .iter()
            .map(|(t, list)| {
                let body = match format {
                    DeidFormat::Ndjson => output::ndjson(list),
                    DeidFormat::Csv => output::csv(list),
                };
                (format!("{t}.{}", format.extension()), body)
            })
            .collect()
    }

    /// Every resource as NDJSON, Patients first (for a single HTTP response).
    pub fn ndjson(&self) -> String {
        let patients = self.resources("Patient");
        let mut out = output::ndjson(patients);
        for (t, list) in &self.resources {
            if *t != "Patient" {
                out.push_str(&output::ndjson(list));
            }
        }
        out
    }
}

/// One record to de-identify: its type, the resource, and the id of its patient.
pub(crate) struct Input {
    pub rtype: &'static str,
    pub resource: Value,
    pub patient: Option<String>,
}

/// The de-identification itself, with a fresh pepper that is dropped (wiped) on return.
/// `ids` maps every resource id of the organization to its type.
pub(crate) fn deidentify(
    method: DeidMethod,
    year: i32,
    ids: &HashMap<String, &'static str>,
    records: &[Input],
) -> Result<DeidExport, VaultError> {
    let pepper = pseudonym::Pepper::fresh()?;
    let cleaner = clean::Cleaner {
        method,
        pepper: &pepper,
        year,
        ids,
    };
    let mut export = DeidExport {
        method,
        resources: BTreeMap::new(),
        left_out: BTreeMap::new(),
    };
    for r in records {
        let reason = match r.patient.as_deref() {
            None => "no-patient",
            Some(p) => match cleaner.resource(&r.resource, Some(p)) {
                Some(v) => {
                    export.resources.entry(r.rtype).or_default().push(v);
                    continue;
                }
                None => "incomplete",
            },
        };
        *export.left_out.entry(reason).or_default() += 1;
    }
    Ok(export)
}

/// The types to export: those asked for (each must be one de-identified exports include), or
/// all of them.
fn wanted_types(asked: &[String]) -> Result<BTreeSet<&'static str>, VaultError> {
    if asked.is_empty() {
        return Ok(rules::exported_types().collect());
    }
    asked
        .iter()
        .map(|t| {
            rules::exported_types()
                .find(|e| e == &t.trim())
                .ok_or_else(|| {
                    VaultError::Invalid(
                        "a type asked for is not one de-identified exports include".into(),
                    )
                })
        })
        .collect()
}

impl Vault {
    /// Every live record of one store, opened, one page at a time.
    async fn each_record(
        &self,
        ctx: &Ctx,
        kind: StoreKind,
        mut f: impl FnMut(Stored),
    ) -> Result<(), VaultError> {
        let mut after: Option<RecordKey> = None;
        loop {
            let recs = self.store(kind).page(&ctx.org, after.as_ref(), 500).await?;
            let Some(last) = recs.last() else {
                return Ok(());
            };
            after = Some(RecordKey {
                rtype: last.rtype,
                id: last.id.clone(),
            });
            self.know_keks(&recs).await?;
            for r in recs.iter().filter(|r| !r.rtype.is_internal()) {
                f(self.unseal(ctx, r)?);
            }
        }
    }

    /// Reads what the export needs: the records of the wanted types with their patients' ids,
    /// every id's type, and how many records were left out for their type.
    async fn deid_inputs(
        &self,
        ctx: &Ctx,
        wanted: &BTreeSet<&'static str>,
    ) -> Result<(Vec<Input>, HashMap<String, &'static str>, u64), VaultError> {
        let mut inputs = Vec::new();
        let mut ids = HashMap::new();
        let mut links: HashMap<Digest32, String> = HashMap::new();
        let mut other_types = 0u64;
        for kind in [StoreKind::Identity, StoreKind::Clinical] {
            self.each_record(ctx, kind, |s| {
                let rtype = s.rtype.as_str();
                let id = s.id.as_str().to_owned();
                ids.insert(id.clone(), rtype);
                let patient = if s.rtype.is_patient() {
                    if let Some(link) = s.patient {
                        links.insert(link, id.clone());
                    }
                    Some(id)
                } else {
                    s.patient.and_then(|l| links.get(&l).cloned())
                };
                if wanted.contains(rtype) {
                    inputs.push(Input {
                        rtype,
                        resource: s.resource,
                        patient,
                    });
                } else {
                    other_types += 1;
                }
            })
            .await?;
        }
        Ok((inputs, ids, other_types))
    }

    /// A de-identified export of the organization (see the module documentation). One audit
    /// event, `export-deid`, with the method, the counts per type and the total, never a
    /// value. Permissions: the operator; an ORG_ADMIN, or an INTEGRATION_MANAGER client with
    /// read scopes for the types, acting for HRESCH or PUBHLTH ([`crate::policy::deid`]).
    pub async fn export_deidentified(
        &self,
        ctx: &Ctx,
        opts: &DeidOptions,
    ) -> Result<DeidExport, VaultError> {
        let mut event = self.event(ctx, "export-deid");
        event.reason = Some(opts.method.as_str().to_owned());
        let wanted = match wanted_types(&opts.types) {
            Ok(w) => w,
            Err(e) => return self.audit_failure(event, e).await,
        };
        let types: Vec<&str> = wanted.iter().copied().collect();
        if let Err(reason) =
            crate::policy::deid::decide(&ctx.subject, ctx.purpose.as_deref(), &types)
        {
            return self.deny(&event, reason).await;
        }
        let result = async {
            let (inputs, ids, other_types) = self.deid_inputs(ctx, &wanted).await?;
            let mut export = deidentify(opts.method, self.clock.now().year(), &ids, &inputs)?;
            if other_types > 0 {
                export.left_out.insert("type", other_types);
            }
            Ok::<_, VaultError>(export)
        }
        .await;
        match result {
            Ok(export) => {
                event.count = Some(export.total());
                event.fields = export
                    .counts()
                    .iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .chain(
                        export
                            .left_out
                            .iter()
                            .map(|(r, n)| format!("left-out:{r}={n}")),
                    )
                    .collect();
                self.audit(event).await?;
                Ok(export)
            }
            Err(e) => self.audit_failure(event, e).await,
        }
    }
}
