//! `phivault erase patient`: crypto-shredding. The vault destroys the records with their data
//! keys and audits; this file opens the vault as the operator and prints counts.
use super::{DirArgs, OrgArgs, in_org};
use clap::Subcommand;
use phivault_core::ResourceId;
use serde_json::json;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum EraseWhat {
    /// Destroy a patient and all its clinical records with their data keys.
    Patient {
        /// The Patient id.
        id: String,
        /// Why (for the record).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an erase command.
pub async fn run(what: EraseWhat) -> Result<ExitCode, String> {
    let EraseWhat::Patient {
        id,
        reason,
        dir,
        org,
        json,
    } = what;
    if reason.trim().is_empty() {
        return Err("--reason must say why the patient is erased".into());
    }
    let id = ResourceId::parse(&id).map_err(|e| e.to_string())?;
    let r = in_org(&dir.data_dir, &org, async |opened, c| {
        opened.vault.erase_patient(c, &id).await
    })
    .await?;
    if json {
        println!(
            "{}",
            json!({"patient": id.as_str(), "patient_versions": r.patient_versions,
                   "clinical_records": r.clinical_records, "clinical_versions": r.clinical_versions})
        );
    } else {
        println!(
            "erased Patient/{id}: {} patient versions, {} clinical records ({} versions) destroyed with their keys",
            r.patient_versions, r.clinical_records, r.clinical_versions
        );
    }
    Ok(ExitCode::SUCCESS)
}
