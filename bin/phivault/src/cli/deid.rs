//! `phivault export deid`: a de-identified export into a new private directory, one file per
//! resource type. The vault reads, de-identifies and audits (one `export-deid` event); this
//! file only opens the vault, writes the files (directory 0700, files 0600) and prints counts,
//! never contents.
use super::{DirArgs, OrgArgs};
use clap::{Args, Subcommand, ValueEnum};
use phivault_vault::{DeidExport, DeidFormat, DeidMethod, DeidOptions};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// A de-identified export: HIPAA Safe Harbor (the default) or pseudonymized (dates shifted
    /// per patient), ids replaced by pseudonyms under a fresh per-export key; one file per
    /// resource type in a new directory. Prints counts, never contents.
    Deid(DeidArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// §164.514(b)(2): the 18 identifier kinds removed, dates cut to the year, ZIP to 3 digits.
    SafeHarbor,
    /// Identifiers removed as for Safe Harbor, dates kept whole but moved by a per-patient offset.
    Pseudonymized,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// FHIR NDJSON (Bulk Data style): `Patient.ndjson`, `Observation.ndjson`, …
    Ndjson,
    /// CSV, one row per resource, one column per leaf element (`code.coding.0.code`).
    Csv,
}

#[derive(Debug, Args)]
pub struct DeidArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub org: OrgArgs,
    /// Output directory: created with mode 0700 (an existing one must be empty); files 0600.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = MethodArg::SafeHarbor)]
    pub method: MethodArg,
    /// Comma-separated resource types (default: every type de-identified exports include).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    #[arg(long, value_enum, default_value_t = FormatArg::Ndjson)]
    pub format: FormatArg,
    /// Print the counts as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Creates the output directory (0700), or takes an existing empty one (made 0700). Returns
/// whether it was created here.
fn prepare_dir(out: &Path) -> Result<bool, String> {
    let shown = out.display();
    match std::fs::symlink_metadata(out) {
        Ok(m) if !m.is_dir() => Err(format!("{shown} exists and is not a directory")),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(out).map_err(|e| format!("cannot read {shown}: {}", e.kind()))?;
            if entries.next().is_some() {
                return Err(format!("{shown} is not empty; choose a new or empty --out"));
            }
            set_private(out, 0o700)?;
            Ok(false)
        }
        Err(_) => {
            let mut b = std::fs::DirBuilder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(out)
                .map_err(|e| format!("cannot create {shown}: {}", e.kind()))?;
            Ok(true)
        }
    }
}

fn set_private(path: &Path, mode: u32) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot protect {}: {}", path.display(), e.kind()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes one new file (0600), durably.
fn write_private(path: &Path, body: &str) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {}", path.display(), e.kind());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(body.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

fn write_files(out: &Path, export: &DeidExport, format: DeidFormat) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for (name, body) in export.files(format) {
        write_private(&out.join(&name), &body)?;
        names.push(name);
    }
    Ok(names)
}

/// Removes what a failed export left: the files it wrote, and the directory if it made it.
fn clean_up(out: &Path, created: bool) {
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if created {
        let _ = std::fs::remove_dir(out);
    }
}

pub async fn run(cmd: ExportCmd) -> Result<ExitCode, String> {
    let ExportCmd::Deid(a) = cmd;
    let opts = DeidOptions {
        method: match a.method {
            MethodArg::SafeHarbor => DeidMethod::SafeHarbor,
            MethodArg::Pseudonymized => DeidMethod::Pseudonymized,
        },
        types: a.types.clone(),
    };
    let format = match a.format {
        FormatArg::Ndjson => DeidFormat::Ndjson,
        FormatArg::Csv => DeidFormat::Csv,
    };
    let created = prepare_dir(&a.out)?;
    let result = async {
        let opened = super::open(&a.dir.data_dir).await?;
        let result = async {
            let c = super::ctx(&opened, &a.org).await?;
            opened
                .vault
                .export_deidentified(&c, &opts)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        opened.close().await;
        let export = result?;
        let files = write_files(&a.out, &export, format)?;
        Ok::<_, String>((export, files))
    }
    .await;
    let (export, files) = match result {
        Ok(x) => x,
        Err(e) => {
            clean_up(&a.out, created);
            return Err(e);
        }
    };
    let counts = export.counts();
    if a.json {
        println!(
            "{}",
            json!({"method": export.method.as_str(), "out": a.out.display().to_string(),
                   "total": export.total(), "counts": counts, "left_out": export.left_out,
                   "files": files})
        );
    } else {
        let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
        eprintln!(
            "exported {} de-identified resources ({}) to {}: {}",
            export.total(),
            export.method.as_str(),
            a.out.display(),
            list.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
