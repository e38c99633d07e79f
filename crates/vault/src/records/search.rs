//! Exact patient search through blind indexes: the identity table is never decrypted to
//! search it; only the matching records are opened.
use super::fhir;
use crate::error::VaultError;
use crate::policy::Action;
use crate::{Ctx, Stored, Vault};
use phivault_core::{IndexKind, RecordKey, ResourceId};
use std::collections::BTreeSet;

/// Search criteria; all given criteria must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientQuery {
    /// FHIR token: `system|value`, `|value` (no system) or `value` (any system).
    pub identifier: Option<String>,
    /// Family name; needs `birthdate`.
    pub family: Option<String>,
    /// Birth date as written in the record (`YYYY-MM-DD`); needs `family`.
    pub birthdate: Option<String>,
    /// Phone number in any punctuation.
    pub phone: Option<String>,
    /// The logical id (FHIR `_id`).
    pub id: Option<String>,
}

/// Which slice of the visible matches to release: skip `offset`, take `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchPage {
    pub offset: usize,
    pub count: usize,
}

impl SearchPage {
    pub const ALL: SearchPage = SearchPage {
        offset: 0,
        count: usize::MAX,
    };
}

impl Vault {
    pub(crate) async fn find_patient_keys(
        &self,
        ctx: &Ctx,
        q: &PatientQuery,
    ) -> Result<Vec<RecordKey>, VaultError> {
        let mut terms: Vec<(IndexKind, String)> = Vec::new();
        if let Some(ident) = &q.identifier {
            match ident.split_once('|') {
                Some((_, v)) if v.trim().is_empty() => {
                    return Err(VaultError::Invalid(
                        "identifier search needs a value after '|'".into(),
                    ));
                }
                Some((s, v)) => {
                    terms.push((IndexKind::Identifier, fhir::identifier_term(Some(s), v)))
                }
                None if ident.trim().is_empty() => {
                    return Err(VaultError::Invalid(
                        "identifier search needs a value".into(),
                    ));
                }
                None => terms.push((IndexKind::IdentifierValue, ident.trim().to_owned())),
            }
        }
        match (&q.family, &q.birthdate) {
            (Some(f), Some(b)) => terms.push((
                IndexKind::FamilyBirthdate,
                fhir::family_birthdate_term(f, b),
            )),
            (None, None) => {}
            _ => {
                return Err(VaultError::Invalid(
                    "search by family name needs the birth date too (and the reverse)".into(),
                ));
            }
        }
        if let Some(p) = &q.phone {
            let digits = fhir::normalize_phone(p);
            if digits.len() < 4 {
                return Err(VaultError::Invalid(
                    "phone search needs at least 4 digits".into(),
                ));
            }
            terms.push((IndexKind::Phone, digits));
        }
        let mut result: Option<BTreeSet<RecordKey>> = None;
        if let Some(id) = &q.id {
            let id = ResourceId::parse(id.trim())
                .map_err(|_| VaultError::Invalid("_id is not a valid resource id".into()))?;
            result = Some(BTreeSet::from([self.row_key(
                ctx,
                phivault_core::ResourceType::PATIENT,
                &id,
            )]));
        } else if terms.is_empty() {
            return Err(VaultError::Invalid(
                "give at least one search criterion (identifier, family + birthdate, phone, _id)"
                    .into(),
            ));
        }
        for (kind, term) in terms {
            let digest = self.keyring.blind_index(kind, &ctx.org, &term);
            let found: BTreeSet<RecordKey> = self
                .identity
                .find(&ctx.org, kind, &digest)
                .await?
                .into_iter()
                .collect();
            result = Some(match result {
                None => found,
                Some(prev) => prev.intersection(&found).cloned().collect(),
            });
        }
        Ok(result.unwrap_or_default().into_iter().collect())
    }

    /// Finds patients exactly matching every given criterion. One audit event lists the
    /// patients released.
    pub async fn search_patients(
        &self,
        ctx: &Ctx,
        q: &PatientQuery,
    ) -> Result<Vec<Stored>, VaultError> {
        Ok(self.search_patients_page(ctx, q, SearchPage::ALL).await?.0)
    }

    /// One page of the matches the caller may see, and whether more follow. Only the page is
    /// released and audited.
    pub async fn search_patients_page(
        &self,
        ctx: &Ctx,
        q: &PatientQuery,
        page: SearchPage,
    ) -> Result<(Vec<Stored>, bool), VaultError> {
        let mut event = self.event(ctx, "search");
        event.resource_type = Some("Patient".into());
        if !Self::may_at_all(ctx, Action::Search, "Patient") {
            self.authorize(ctx, Action::Search, "Patient", None, &event)
                .await?;
        }
        let result = async {
            let keys = self.find_patient_keys(ctx, q).await?;
            let mut out = Vec::new();
            let (mut skipped, mut more) = (0usize, false);
            for k in keys {
                match self.read_row(ctx, &k).await {
                    // Only the patients this caller may see; the others are not counted.
                    Ok(s) => {
                        let verdict = self
                            .check(ctx, Action::Search, "Patient", s.patient)
                            .await?;
                        if let Ok(allowed) = verdict {
                            if skipped < page.offset {
                                skipped += 1;
                                continue;
                            }
                            if out.len() >= page.count {
                                more = true;
                                break;
                            }
                            event.break_glass |= allowed.break_glass;
                            out.push((k.id, self.release(&allowed, s)));
                        }
                    }
                    // Raced with a delete or erase: not a match any more.
                    Err(VaultError::NotFound | VaultError::Gone) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((out, more))
        }
        .await;
        match result {
            Ok((found, more)) => {
                event.count = Some(found.len() as u64);
                event.entities = found.iter().map(|(k, _)| k.as_str().to_owned()).collect();
                for (_, s) in &found {
                    event = event.patient(s.patient);
                }
                if let Some((_, s)) = found.first() {
                    event.fields = s.fields();
                }
                self.audit_read(ctx, event).await?;
                Ok((found.into_iter().map(|(_, s)| s).collect(), more))
            }
            Err(e) => self.audit_read_failure(ctx, event, e).await,
        }
    }
}
