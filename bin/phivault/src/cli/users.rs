//! `phivault user add|disable|enable|reset-password|reset-mfa|list`: people. The vault
//! decides and audits; this file opens the vault as the operator and prints.
use super::{DirArgs, ListArgs, OrgArgs, ctx, open, parse_role, vault_err};
use clap::Subcommand;
use phivault_vault::{VaultError, views};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user; prints a one-time password (shown once) that must be changed at first login.
    Add {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        #[arg(long)]
        username: String,
        /// SUPER_ADMIN, ORG_ADMIN, INTEGRATION_MANAGER, VIEWER, AUDITOR, CLINICIAN or NURSE.
        #[arg(long)]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user (its sessions end at once).
    Disable {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
    },
    /// Enable a user again (and clear a lockout).
    Enable {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
    },
    /// A new one-time password, to be changed at next login.
    ResetPassword {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget the user's TOTP and backup codes: it enrolls again at next login.
    ResetMfa {
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        org: OrgArgs,
        username: String,
    },
    /// List the organization's users: role, MFA state, last sign-in. JSON: `[{username, role,
    /// organization, disabled, mfa, mfa_enrolled, must_change_password, last_sign_in}]`.
    List(ListArgs),
}

/// Runs a user command.
pub async fn run(what: UserCmd) -> Result<ExitCode, String> {
    let (dir, org) = match &what {
        UserCmd::Add { dir, org, .. }
        | UserCmd::Disable { dir, org, .. }
        | UserCmd::Enable { dir, org, .. }
        | UserCmd::ResetPassword { dir, org, .. }
        | UserCmd::ResetMfa { dir, org, .. }
        | UserCmd::List(ListArgs { dir, org, .. }) => (dir.data_dir.clone(), org.org.clone()),
    };
    let opened = open(&dir).await?;
    let result = async {
        let c = ctx(&opened, &OrgArgs { org }).await?;
        let v = &opened.vault;
        let e = |e: VaultError| vault_err(&e);
        match what {
            UserCmd::Add {
                username, role, json, ..
            } => {
                let role = parse_role(&role)?;
                let org = c.org().clone();
                let n = v.add_user(&c, &org, &username, role, false).await.map_err(e)?;
                if json {
                    println!(
                        "{}",
                        json!({"username": n.user.username, "role": n.user.role.as_str(),
                               "organization": n.user.org.as_str(),
                               "one_time_password": n.one_time_password.expose()})
                    );
                } else {
                    println!(
                        "added {} ({}) in {}; one-time password (shown once, must be changed at first login): {}",
                        n.user.username,
                        n.user.role,
                        n.user.org,
                        n.one_time_password.expose()
                    );
                }
            }
            UserCmd::Disable { username, .. } => {
                v.set_user_disabled(&c, &username, true).await.map_err(e)?;
                println!("disabled {username}; its sessions are ended");
            }
            UserCmd::Enable { username, .. } => {
                v.set_user_disabled(&c, &username, false).await.map_err(e)?;
                println!("enabled {username}");
            }
            UserCmd::ResetPassword { username, json, .. } => {
                let otp = v.reset_password(&c, &username).await.map_err(e)?;
                if json {
                    println!("{}", json!({"username": username, "one_time_password": otp.expose()}));
                } else {
                    println!(
                        "new one-time password for {username} (shown once, must be changed at next login): {}",
                        otp.expose()
                    );
                }
            }
            UserCmd::ResetMfa { username, .. } => {
                v.reset_mfa(&c, &username).await.map_err(e)?;
                println!("MFA reset for {username}: it enrolls again at next login");
            }
            UserCmd::List(ListArgs { json, .. }) => {
                print_users(&v.list_users(&c).await.map_err(e)?, json);
            }
        }
        Ok::<(), String>(())
    }
    .await;
    opened.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// `user list`: each person's role, MFA state and last sign-in (`never` before the first).
fn print_users(users: &[phivault_vault::auth::UserInfo], json: bool) {
    if json {
        let list: Vec<Value> = users.iter().map(views::user).collect();
        println!("{}", Value::Array(list));
        return;
    }
    for u in users {
        let last = views::time_millis(u.last_login_at);
        println!(
            "{:<24} {:<20} mfa:{:<9} last-sign-in:{:<21}{}{}",
            u.username,
            u.role.as_str(),
            views::mfa_state(u),
            last.as_str().unwrap_or("never"),
            if u.disabled { " disabled" } else { "" },
            if u.must_change_password {
                " must-change-password"
            } else {
                ""
            }
        );
    }
}
