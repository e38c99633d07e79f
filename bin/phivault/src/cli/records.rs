//! `phivault import`, `export` and `search`: FHIR resources in and out of the vault. The vault
//! parses, seals, reads and audits; this file reads and writes the files and prints.
use super::output::{PrivateFile, Progress};
use super::{DirArgs, OrgArgs, ctx, in_org, open, vault_err};
use crate::datadir::Opened;
use clap::Args;
use phivault_core::StoreKind;
use phivault_fhir::{Bundle, Entry, SearchMode, export_full_url, full_url};
use phivault_vault::{ImportOptions, ImportReport, PageCursor, PatientQuery};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// `phivault import` (its help is the doc comment of `Command::Import`).
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    org: OrgArgs,
    /// Stop at the first bad entry (the default skips it and goes on).
    #[arg(long)]
    strict: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// JSON files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

// `phivault export` (its help is the doc comment of `Command::Export`).
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    what: Option<super::deid::ExportCmd>,
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    org: OrgArgs,
    /// Output file; refused if it exists, unless --force.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    force: bool,
}

// `phivault search` (its help is the doc comment of `Command::Search`).
#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    dir: DirArgs,
    #[command(flatten)]
    org: OrgArgs,
    /// `system|value`, `|value` or `value`.
    #[arg(long)]
    identifier: Option<String>,
    /// Family name (with --birthdate).
    #[arg(long)]
    family: Option<String>,
    /// Birth date YYYY-MM-DD (with --family).
    #[arg(long)]
    birthdate: Option<String>,
    /// Phone number.
    #[arg(long)]
    phone: Option<String>,
}

/// `phivault import`: exit 0, or 2 when some entries were skipped.
pub async fn import_cmd(a: ImportArgs) -> Result<ExitCode, String> {
    let opened = open(&a.dir.data_dir).await?;
    let result = import(&opened, &a.org, a.strict, &a.files).await;
    opened.close().await;
    let report = result?;
    if a.json {
        let skipped: Vec<Value> = report
            .skipped
            .iter()
            .map(|s| json!({"entry": s.entry, "reason": s.reason}))
            .collect();
        println!(
            "{}",
            json!({"patients": report.patients, "resources": report.resources, "skipped": skipped})
        );
    } else {
        println!("{}", report.summary());
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `phivault export`, or `export deid`.
pub async fn export_cmd(a: ExportArgs) -> Result<ExitCode, String> {
    if let Some(what) = a.what {
        if a.out.is_some() || a.force {
            return Err("give `export deid` its options after `deid`".into());
        }
        return super::deid::run(what).await;
    }
    let out = a.out.ok_or("--out is required")?;
    let opened = open(&a.dir.data_dir).await?;
    let result = export(&opened, &a.org, &out, a.force).await;
    opened.close().await;
    let n = result?;
    eprintln!("exported {n} resources to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `phivault search`: prints a FHIR searchset Bundle.
pub async fn search_cmd(a: SearchArgs) -> Result<ExitCode, String> {
    let q = PatientQuery {
        identifier: a.identifier,
        family: a.family,
        birthdate: a.birthdate,
        phone: a.phone,
        id: None,
    };
    let found = in_org(&a.dir.data_dir, &a.org, async |opened, c| {
        opened.vault.search_patients(c, &q).await
    })
    .await?;
    let entries: Vec<Entry> = found
        .into_iter()
        .map(|s| Entry::found(full_url("Patient", &s.id), s.resource, SearchMode::Match))
        .collect();
    println!("{}", Bundle::searchset().counted(entries).into_value());
    Ok(ExitCode::SUCCESS)
}

async fn import(
    opened: &Opened,
    org: &OrgArgs,
    strict: bool,
    files: &[PathBuf],
) -> Result<ImportReport, String> {
    let c = ctx(opened, org).await?;
    let mut report = ImportReport::default();
    let opts = ImportOptions { strict };
    let mut bar = Progress::new();
    for file in files {
        let name = file.display().to_string();
        let doc = std::fs::read(file)
            .map_err(|e| format!("cannot read: {}", e.kind()))
            .and_then(|bytes| {
                serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                    format!(
                        "not JSON (line {}, column {}: {})",
                        e.line(),
                        e.column(),
                        match e.classify() {
                            serde_json::error::Category::Io => "read error",
                            serde_json::error::Category::Syntax => "syntax error",
                            serde_json::error::Category::Data => "data error",
                            serde_json::error::Category::Eof => "unexpected end",
                        }
                    )
                })
            });
        let doc = match doc {
            Ok(d) => d,
            Err(reason) => {
                if strict {
                    return Err(format!("{name}: {reason}"));
                }
                report.skipped.push(phivault_vault::Skipped {
                    entry: name,
                    reason,
                });
                continue;
            }
        };
        let label = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        opened
            .vault
            .import_document(&c, &name, doc, opts, &mut report, &mut |p| {
                bar.show(&label, p.done, p.total)
            })
            .await
            .map_err(|e| vault_err(&e))?;
    }
    Ok(report)
}

/// Streams the export into a private temporary file beside `out`, then renames it into place.
async fn export(opened: &Opened, org: &OrgArgs, out: &Path, force: bool) -> Result<u64, String> {
    let mut file = PrivateFile::create(out, force)?;
    let c = ctx(opened, org).await?;
    file.write(Bundle::collection().streamed_head().as_bytes())?;
    let mut n = 0u64;
    for kind in [StoreKind::Identity, StoreKind::Clinical] {
        let mut after: Option<PageCursor> = None;
        loop {
            let (page, next) = opened
                .vault
                .page(&c, kind, after.as_ref(), 500)
                .await
                .map_err(|e| vault_err(&e))?;
            if page.is_empty() {
                break;
            }
            after = next;
            for s in page {
                if n > 0 {
                    file.write(b",")?;
                }
                let entry = Entry::of(export_full_url(s.rtype.as_str(), s.id.as_str()), s.resource)
                    .into_value();
                serde_json::to_writer(file.writer()?, &entry).map_err(|e| e.to_string())?;
                n += 1;
            }
        }
    }
    file.write(format!("{}\n", Bundle::STREAMED_TAIL).as_bytes())?;
    file.finish()?;
    Ok(n)
}
