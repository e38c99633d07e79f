//! The named HL7 interfaces of the MLLP listener: `PHIVAULT_MLLP_INTERFACES` (inline
//! `name=dns.name,…`, or the path of a TOML file) and `PHIVAULT_MLLP_GRANTS` (the interfaces
//! whose admissions may grant the attending doctor under the care-team rule).
//!
//! The file:
//! ```toml
//! [[interface]]
//! name = "lab"                       # audited as hl7:lab
//! dns_name = "lab.example.org"       # the client certificate must be valid for it
//! grants = false                     # the care-team rule (PV1-7), off unless true
//! legacy_senders = ["LABSYS^NORTHLAB"] # MSH-3^MSH-4 of its messages before interfaces were keys
//!
//! [[interface]]
//! name = "default"                   # connections without a client certificate: no dns_name
//! grants = true
//! ```
use serde::Deserialize;

/// The interface of connections without a client certificate (loopback feeds, or when
/// certificates are optional).
pub const DEFAULT: &str = "default";

/// One interface's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceConf {
    pub name: String,
    /// The DNS name its client certificate must be valid for; `None` for the default one.
    pub dns_name: Option<String>,
    /// May grant the attending doctor of its admissions (care-team rule).
    pub grants: bool,
    /// MSH-3^MSH-4 values of this interface's messages from before record keys were the
    /// interface: their duplicates and visits are still found.
    pub legacy_senders: Vec<String>,
}

/// The configured interfaces: the default one first, then the named ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    pub default: InterfaceConf,
    pub named: Vec<InterfaceConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    interface: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    dns_name: Option<String>,
    #[serde(default)]
    grants: bool,
    #[serde(default)]
    legacy_senders: Vec<String>,
}

const VAR: &str = "PHIVAULT_MLLP_INTERFACES";

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn dns_ok(dns: &str) -> bool {
    rustls::pki_types::DnsName::try_from(dns).is_ok()
}

/// `name=dns.name,…`.
fn inline(text: &str) -> Result<Vec<InterfaceConf>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let bad = || format!("{VAR}: '{pair}' is not name=dns.name");
            let (name, dns) = pair.split_once('=').ok_or_else(bad)?;
            let (name, dns) = (name.trim(), dns.trim());
            if !name_ok(name) || name == DEFAULT || !dns_ok(dns) {
                return Err(bad());
            }
            Ok(InterfaceConf {
                name: name.to_owned(),
                dns_name: Some(dns.to_owned()),
                ..Default::default()
            })
        })
        .collect()
}

/// The TOML file at `path` (see the module's documentation).
fn file(path: &str) -> Result<Vec<InterfaceConf>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{VAR}: cannot read the file '{path}': {}", e.kind()))?;
    let parsed: File = toml::from_str(&text)
        .map_err(|e| format!("{VAR}: the file '{path}' is not valid: {}", e.message()))?;
    parsed
        .interface
        .into_iter()
        .map(|e| {
            let bad = |what: &str| format!("{VAR}: interface '{}': {what}", e.name);
            if !name_ok(&e.name) {
                return Err(bad("the name is 1 to 64 of A-Z a-z 0-9 - _ ."));
            }
            match (&e.dns_name, e.name == DEFAULT) {
                (Some(_), true) => return Err(bad("the default interface has no dns_name")),
                (None, false) => return Err(bad("dns_name is required")),
                (Some(d), false) if !dns_ok(d) => return Err(bad("dns_name is not a DNS name")),
                _ => {}
            }
            if e.legacy_senders.iter().any(|s| !s.contains('^')) {
                return Err(bad("legacy_senders are MSH-3^MSH-4 values"));
            }
            Ok(InterfaceConf {
                name: e.name,
                dns_name: e.dns_name,
                grants: e.grants,
                legacy_senders: e.legacy_senders,
            })
        })
        .collect()
}

/// From `PHIVAULT_MLLP_INTERFACES` (`value`: inline when it holds `=` and does not start with
/// `/`, else a file path) and `PHIVAULT_MLLP_GRANTS` (`grants`: interface names, commas).
pub fn parse(value: Option<&str>, grants: Option<&str>) -> Result<Interfaces, String> {
    let all = match value.map(str::trim) {
        None | Some("") => Vec::new(),
        Some(v) if v.contains('=') && !v.starts_with('/') => inline(v)?,
        Some(path) => file(path)?,
    };
    let mut default = InterfaceConf {
        name: DEFAULT.into(),
        ..Default::default()
    };
    let mut named: Vec<InterfaceConf> = Vec::new();
    for i in all {
        if i.name == default.name && i.dns_name.is_none() {
            default = i;
        } else if named.iter().any(|n| n.name == i.name) {
            return Err(format!("{VAR}: interface '{}' is named twice", i.name));
        } else {
            named.push(i);
        }
    }
    for g in grants.unwrap_or("").split(',').map(str::trim) {
        if g.is_empty() {
            continue;
        }
        let target = if g == DEFAULT {
            Some(&mut default)
        } else {
            named.iter_mut().find(|n| n.name == g)
        };
        target
            .ok_or_else(|| format!("PHIVAULT_MLLP_GRANTS: '{g}' is not a configured interface"))?
            .grants = true;
    }
    Ok(Interfaces { default, named })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn inline_form_and_grants() {
        let i = parse(
            Some("lab=lab.example.org, adt=adt.example.org"),
            Some("adt,default"),
        )
        .unwrap();
        assert_eq!(i.named.len(), 2);
        assert!(!i.named[0].grants && i.named[1].grants && i.default.grants);
        assert_eq!(i.named[0].dns_name.as_deref(), Some("lab.example.org"));
        assert!(
            !parse(None, None).unwrap().default.grants,
            "no grants by default"
        );
        for bad in [
            "lab",
            "lab=",
            "=x.org",
            "la b=x.org",
            "default=x.org",
            "a=x.org,a=y.org",
        ] {
            assert!(parse(Some(bad), None).is_err(), "{bad}");
        }
        assert!(parse(Some("lab=lab.example.org"), Some("nope")).is_err());
    }

    #[test]
    fn file_form() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("interfaces.toml");
        std::fs::write(
            &p,
            "[[interface]]\nname = \"lab\"\ndns_name = \"lab.example.org\"\ngrants = true\n\
             legacy_senders = [\"LABSYS^NORTHLAB\"]\n\n[[interface]]\nname = \"default\"\n",
        )
        .unwrap();
        let i = parse(Some(p.to_str().unwrap()), None).unwrap();
        assert_eq!(i.named.len(), 1);
        assert!(i.named[0].grants);
        assert_eq!(i.named[0].legacy_senders, ["LABSYS^NORTHLAB"]);
        assert!(!i.default.grants);
        for bad in [
            "[[interface]]\nname = \"lab\"\n",
            "[[interface]]\nname = \"default\"\ndns_name = \"x.org\"\n",
            "[[interface]]\nname = \"lab\"\ndns_name = \"x.org\"\ngrant = true\n",
            "[[interface]]\nname = \"lab\"\ndns_name = \"x.org\"\nlegacy_senders = [\"LAB\"]\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(parse(Some(p.to_str().unwrap()), None).is_err(), "{bad}");
        }
        assert!(parse(Some("/nonexistent/interfaces.toml"), None).is_err());
    }
}
