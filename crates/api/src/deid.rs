//! `POST /admin/export/deid`: a de-identified export (Safe Harbor or pseudonymized) of the
//! caller's organization as FHIR NDJSON. One vault call: the vault authorizes, reads,
//! de-identifies and audits; this adapter only parses the parameters and writes the body.
use crate::AppState;
use crate::auth::Authenticated;
use crate::error::{ApiError, JsonErrors};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use phivault_vault::{DeidMethod, DeidOptions, VaultError};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// FHIR Bulk Data's NDJSON media type.
pub const FHIR_NDJSON: &str = "application/fhir+ndjson";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_deid))
}

/// The export's parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeidParams {
    /// `safe-harbor` (the default) or `pseudonymized`.
    #[param(pattern = "^(safe-harbor|pseudonymized)$")]
    method: Option<String>,
    /// Comma-separated resource types (default: every type de-identified exports include:
    /// Patient, Encounter, Condition, Observation, Procedure, DiagnosticReport,
    /// MedicationRequest, MedicationStatement, MedicationAdministration, Immunization,
    /// AllergyIntolerance).
    types: Option<String>,
}

/// `POST /admin/export/deid?method=safe-harbor|pseudonymized&types=Patient,Observation`: the
/// organization's records de-identified, as FHIR NDJSON (Patients first, then the other types),
/// with a fresh pepper for its pseudonyms; audited as one `export-deid` event with counts.
/// Permissions: ORG_ADMIN, or an INTEGRATION_MANAGER client that acts for the purpose and
/// whose scopes read every type exported, with `X-Purpose-Of-Use: HRESCH` or `PUBHLTH`; the
/// vault decides (others: 403).
#[utoipa::path(post, path = "/admin/export/deid", tag = "admin",
    params(DeidParams, ("X-Purpose-Of-Use" = String, Header, description = "HRESCH or PUBHLTH")),
    responses((status = 200, description = "De-identified resources, one per line", body = String, content_type = "application/fhir+ndjson"), JsonErrors),
    security(("bearer" = [])))]
pub async fn export_deid(
    State(state): State<AppState>,
    auth: Authenticated,
    params: Result<Query<DeidParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // A malformed query string gets the JSON error every other admin call gives.
    let Query(params) = params.map_err(|_| {
        ApiError(VaultError::Invalid(
            "the query string takes method=safe-harbor|pseudonymized and types=T,… once each"
                .into(),
        ))
    })?;
    let method = match params.method.as_deref() {
        None => DeidMethod::SafeHarbor,
        Some(m) => DeidMethod::parse(m).ok_or_else(|| {
            ApiError(VaultError::Invalid(
                "method is safe-harbor or pseudonymized".into(),
            ))
        })?,
    };
    let types = params
        .types
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let export = state
        .vault
        .export_deidentified(&auth.ctx(), &DeidOptions { method, types })
        .await?;
    Ok(([(header::CONTENT_TYPE, FHIR_NDJSON)], export.ndjson()).into_response())
}
