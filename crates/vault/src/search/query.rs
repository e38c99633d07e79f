//! A FHIR search as the vault runs it: the query string's criteria and result parameters,
//! checked against the type's parameter table (an unknown parameter or modifier is an error,
//! not silently ignored: ignoring it would widen the result).
use super::dates::DateParam;
use super::matcher::{Criterion, Wanted};
use super::params::{self, Kind, ParamDef};
use super::text;
use crate::error::VaultError;
use phivault_core::{ResourceId, ResourceType};

/// Page size when `_count` is not given, and the most a page may hold.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;
/// The most values one search may carry (criteria and their alternatives).
const MAX_VALUES: usize = 64;

/// Whether to count every match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    /// When it costs nothing (the answer fits the page).
    #[default]
    Cheap,
    Accurate,
    None,
}

/// One `_sort` key.
#[derive(Debug, Clone, Copy)]
pub struct SortBy {
    /// `None`: by `_id`.
    pub def: Option<&'static ParamDef>,
    pub descending: bool,
}

/// `_include` (`Type:param`, on the matches' own type) or `_revinclude` (records of `rtype`
/// whose `param` points at a match).
#[derive(Debug, Clone)]
pub struct Join {
    pub rtype: ResourceType,
    pub def: &'static ParamDef,
}

/// A parsed search.
#[derive(Debug, Clone)]
pub struct SearchSpec {
    pub rtype: ResourceType,
    pub criteria: Vec<Criterion>,
    pub sort: Vec<SortBy>,
    pub count: usize,
    pub offset: usize,
    /// Keyset paging: the last row released by the previous page (from a sealed cursor only).
    pub after: Option<ResourceId>,
    /// Keyset paging of a streamed search: the index position after the previous page.
    pub after_seq: Option<u64>,
    /// How many matches the previous pages released (from a sealed cursor only).
    pub seen: usize,
    pub summary_count: bool,
    pub total: Total,
    pub elements: Option<Vec<String>>,
    pub includes: Vec<Join>,
    pub revincludes: Vec<Join>,
}

fn invalid(msg: String) -> VaultError {
    VaultError::Invalid(msg)
}

/// Splits at commas not escaped with `\`.
fn alternatives(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(',' | '\\' | '|' | '$')) => {
                if let (Some(n), Some(last)) = (chars.next(), out.last_mut()) {
                    last.push(n);
                }
            }
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

fn wanted(def: &ParamDef, modifier: Option<&str>, v: &str) -> Result<Wanted, VaultError> {
    let bad = |what: &str| invalid(format!("{}: {what}", def.name));
    let v = v.trim();
    Ok(match def.kind {
        Kind::Str => {
            let exact = match modifier {
                None => false,
                Some("exact") => true,
                Some(_) => return Err(bad("the only modifier is :exact")),
            };
            let text = if exact { v.to_owned() } else { text::fold(v) };
            Wanted::Str { text, exact }
        }
        Kind::Token => {
            let (system, code) = match v.split_once('|') {
                Some((s, c)) => (Some(s.trim().to_owned()), c.trim()),
                None => (None, v),
            };
            if code.is_empty() {
                return Err(bad("needs a code after '|'"));
            }
            Wanted::Token {
                system,
                code: code.to_owned(),
            }
        }
        Kind::Date => Wanted::Date(DateParam::parse(v).ok_or_else(|| {
            bad("is [eq|ne|lt|le|gt|ge|sa|eb|ap]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]]")
        })?),
        Kind::Reference => {
            let v = v.split(['?', '#']).next().unwrap_or(v);
            let mut parts = v.rsplit('/');
            let id = parts.next().unwrap_or("");
            let rtype = modifier.or(parts.next()).unwrap_or("").to_owned();
            ResourceId::parse(id).map_err(|_| bad("is not a valid reference"))?;
            if !rtype.is_empty() && ResourceType::parse(&rtype).is_err() {
                return Err(bad("names an unknown resource type"));
            }
            if matches!(def.name, "patient") && !rtype.is_empty() && rtype != "Patient" {
                return Err(bad("refers to a Patient"));
            }
            Wanted::Reference {
                rtype,
                id: id.to_owned(),
            }
        }
        Kind::Phonetic => Wanted::Phonetic(text::soundex(v).ok_or_else(|| bad("needs letters"))?),
        Kind::Id => {
            ResourceId::parse(v).map_err(|_| bad("is not a valid resource id"))?;
            Wanted::Id(v.to_owned())
        }
    })
}

impl SearchSpec {
    /// Parses the query's pairs (empty values are ignored, as FHIR says). `_after` is taken
    /// only from a sealed cursor (`from_cursor`).
    pub fn parse(
        rtype: ResourceType,
        pairs: &[(String, String)],
        from_cursor: bool,
    ) -> Result<SearchSpec, VaultError> {
        let mut spec = SearchSpec {
            rtype,
            criteria: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            after: None,
            after_seq: None,
            seen: 0,
            summary_count: false,
            total: Total::Cheap,
            elements: None,
            includes: Vec::new(),
            revincludes: Vec::new(),
        };
        let mut seen_results: Vec<&str> = Vec::new();
        let mut values = 0usize;
        for (k, v) in pairs.iter().filter(|(_, v)| !v.trim().is_empty()) {
            if params::RESULT_PARAMS.contains(&k.as_str())
                || matches!(k.as_str(), "_after" | "_afterseq" | "_seen")
            {
                if k != "_include" && k != "_revinclude" {
                    if seen_results.contains(&k.as_str()) {
                        return Err(invalid(format!("{k} given more than once")));
                    }
                    seen_results.push(k);
                }
                spec.result_param(k, v, from_cursor)?;
                continue;
            }
            let (name, modifier) = match k.split_once(':') {
                Some((n, m)) => (n, Some(m)),
                None => (k.as_str(), None),
            };
            let Some(def) = params::find(rtype.as_str(), name) else {
                let shown: String = k.chars().take(40).collect();
                let known: Vec<&str> = params::of_type(rtype.as_str())
                    .iter()
                    .map(|d| d.name)
                    .collect();
                return Err(invalid(format!(
                    "unsupported search parameter '{shown}' for {rtype} (supported: {}; and {})",
                    known.join(", "),
                    params::RESULT_PARAMS.join(", ")
                )));
            };
            if modifier.is_some() && !matches!(def.kind, Kind::Str | Kind::Reference) {
                return Err(invalid(format!("{name}: modifiers are not supported")));
            }
            let any_of = alternatives(v)
                .iter()
                .map(|a| wanted(def, modifier, a))
                .collect::<Result<Vec<_>, _>>()?;
            values += any_of.len();
            if values > MAX_VALUES {
                return Err(invalid(format!("at most {MAX_VALUES} search values")));
            }
            if !any_of.is_empty() {
                spec.criteria.push(Criterion { def, any_of });
            }
        }
        Ok(spec)
    }

    fn result_param(&mut self, k: &str, v: &str, from_cursor: bool) -> Result<(), VaultError> {
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| invalid(format!("{k} is not a number")))
        };
        match k {
            "_count" => self.count = num(v)?.min(MAX_COUNT),
            "_offset" => {
                let n = num(v)?;
                // Deeper pages come by the next link, which opens only what it releases.
                if n > super::MAX_CANDIDATES {
                    return Err(VaultError::TooCostly(format!(
                        "_offset beyond {}: follow the next link instead",
                        super::MAX_CANDIDATES
                    )));
                }
                self.offset = n;
            }
            "_after" if from_cursor => {
                self.after =
                    Some(ResourceId::parse(v.trim()).map_err(|_| invalid("bad cursor".into()))?)
            }
            "_seen" if from_cursor => self.seen = num(v)?,
            "_afterseq" if from_cursor => {
                self.after_seq = Some(
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| invalid("bad cursor".into()))?,
                )
            }
            "_after" | "_afterseq" | "_seen" => {
                return Err(invalid(format!("unsupported search parameter '{k}'")));
            }
            "_summary" => match v.trim() {
                "count" => self.summary_count = true,
                "false" => {}
                _ => return Err(invalid("_summary takes count or false".into())),
            },
            "_total" => {
                self.total = match v.trim() {
                    "accurate" => Total::Accurate,
                    "none" => Total::None,
                    "estimate" => Total::Cheap,
                    _ => return Err(invalid("_total takes none, estimate or accurate".into())),
                }
            }
            "_elements" => {
                self.elements = Some(
                    alternatives(v)
                        .into_iter()
                        .map(|e| e.trim().to_owned())
                        .collect(),
                )
            }
            "_sort" => self.sort = self.sorts(v)?,
            "_include" | "_revinclude" => {
                for one in alternatives(v) {
                    let join = self.join(k, &one)?;
                    match k {
                        "_include" => self.includes.push(join),
                        _ => self.revincludes.push(join),
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn sorts(&self, v: &str) -> Result<Vec<SortBy>, VaultError> {
        alternatives(v)
            .iter()
            .map(|s| {
                let s = s.trim();
                let (name, descending) = match s.strip_prefix('-') {
                    Some(n) => (n, true),
                    None => (s, false),
                };
                if name == "_id" {
                    return Ok(SortBy {
                        def: None,
                        descending,
                    });
                }
                match params::find(self.rtype.as_str(), name) {
                    Some(def) if matches!(def.kind, Kind::Date | Kind::Str | Kind::Token) => {
                        Ok(SortBy {
                            def: Some(def),
                            descending,
                        })
                    }
                    _ => Err(invalid(format!(
                        "_sort takes _id, _lastUpdated or a date, string or token parameter \
                         of {} (a - before it: descending)",
                        self.rtype
                    ))),
                }
            })
            .collect()
    }

    fn join(&self, k: &str, v: &str) -> Result<Join, VaultError> {
        let allowed = match k {
            "_include" => params::includes(self.rtype.as_str()),
            _ => params::revincludes(self.rtype.as_str()),
        };
        let v = v.trim();
        if !allowed.iter().any(|a| a == v) {
            return Err(invalid(format!(
                "{k} for {} takes {}",
                self.rtype,
                if allowed.is_empty() {
                    "nothing".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let (t, p) = v.split_once(':').unwrap_or((v, ""));
        let rtype = ResourceType::parse(t).map_err(|_| invalid(format!("{k}: unknown type")))?;
        let def = params::find(t, p).ok_or_else(|| invalid(format!("{k}: unknown parameter")))?;
        Ok(Join { rtype, def })
    }

    /// The criterion on `name`, if given.
    pub fn criterion(&self, name: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|c| c.def.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<SearchSpec, VaultError> {
        let pairs: Vec<(String, String)> =
            q.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        SearchSpec::parse(ResourceType::PATIENT, &pairs, false)
    }

    #[test]
    fn bad_input_is_refused_with_a_reason_that_echoes_no_value() {
        let refused = [
            vec![("nickname", "Secretname")],
            vec![("family:contains", "Secretname")],
            vec![("birthdate", "19x0-Secret")],
            vec![("gender:missing", "true")],
            vec![("_after", "abc")],
            vec![("_sort", "Secretname")],
            vec![("_include", "Observation:patient")],
            vec![("_offset", "1000000")],
            vec![("_count", "lots")],
            vec![("general-practitioner", "Practitioner/../x")],
        ];
        for q in refused {
            let e = parse(&q).expect_err(&format!("{q:?}"));
            assert!(!e.client_message().contains("Secret"), "{e}");
        }
        let many: String = (0..65).map(|i| format!("a{i},")).collect();
        assert!(parse(&[("name", &many)]).is_err());
        assert!(parse(&[("_offset", "10"), ("name", "a\\,b")]).is_ok());
    }
}
