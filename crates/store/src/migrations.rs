//! The schema migrations of each store: one list and one SQL text for both backends, in
//! `migrations/<store>/<name>.sql`, written with a few placeholders that [`Dialect`] turns
//! into each engine's words. Where the engines truly differ (SQLite cannot drop a constraint
//! in place), a migration has a text per backend: `<name>.sqlite.sql`, `<name>.postgres.sql`.
//! A file missing does not compile; `tests` below fails on a file the list does not name.

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A backend's words for the shared migration text.
#[derive(Clone, Copy)]
pub enum Dialect<'a> {
    Sqlite,
    /// PostgreSQL, with the store's schema.
    Postgres(&'a str),
}

impl Dialect<'_> {
    /// The placeholders and what they become on this backend.
    fn words(self) -> [(&'static str, &'static str); 5] {
        match self {
            Dialect::Sqlite => [
                ("{int}", "INTEGER"),
                ("{bytes}", "BLOB"),
                ("{bool}", "INTEGER"),
                ("{serial}", "INTEGER"),
                ("{without_rowid}", " WITHOUT ROWID"),
            ],
            Dialect::Postgres(_) => [
                ("{int}", "BIGINT"),
                ("{bytes}", "BYTEA"),
                ("{bool}", "BOOLEAN"),
                ("{serial}", "BIGSERIAL"),
                ("{without_rowid}", ""),
            ],
        }
    }

    /// Migration text in this backend's words: `{schema}.` becomes the schema (PostgreSQL) or
    /// nothing (SQLite: one file per store), and each type placeholder its type.
    pub fn render(self, sql: &str) -> String {
        let mut out = match self {
            Dialect::Sqlite => sql.replace("{schema}.", ""),
            Dialect::Postgres(schema) => sql.replace("{schema}", schema),
        };
        for (word, meant) in self.words() {
            out = out.replace(word, meant);
        }
        out
    }
}

/// One migration's SQL text on one backend: the shared file, or with `own` the backend's.
macro_rules! sql_of {
    ($backend:literal, $store:literal, $name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/",
            $store,
            "/",
            $name,
            ".sql"
        ))
    };
    ($backend:literal, $store:literal, $name:literal, own) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/",
            $store,
            "/",
            $name,
            ".",
            $backend,
            ".sql"
        ))
    };
}

/// A store's migrations on one backend, from `version => name [own]` entries.
macro_rules! migrations {
    ($backend:literal, $store:literal, $($v:literal => $name:literal $($own:ident)?),+ $(,)?) => {
        &[$(Migration { version: $v, name: $name, sql: sql_of!($backend, $store, $name $(, $own)?) }),+]
    };
}

/// The migrations of the three kinds of store on one backend: the one list.
macro_rules! backend {
    ($backend:literal) => {
        use super::Migration;
pub(crate) const RECORDS: &[Migration] = migrations!($backend, "records", 1 => "0001_init");
pub(crate) const AUDIT: &[Migration] = migrations!($backend, "audit", 1 => "0001_init");
        pub(crate) const CONTROL: &[Migration] = migrations!($backend, "control",
            1 => "0001_init",
            2 => "0002_auth",
            3 => "0003_grants",
            4 => "0004_client_purposes",
            5 => "0005_tombstones",
            6 => "0006_challenge_attempts",
            7 => "0007_usernames_per_org" own,
            8 => "0008_default_purposes",
        );
    };
}

pub(crate) mod sqlite {
    backend!("sqlite");
}

pub(crate) mod postgres {
    backend!("postgres");
}

/// The control store's migrations before `version`, in `dialect`'s words (for tests that
/// build a store as an older release left it).
#[doc(hidden)]
pub fn control_before(version: i64, dialect: Dialect<'_>) -> Vec<String> {
    let list = match dialect {
        Dialect::Sqlite => sqlite::CONTROL,
        Dialect::Postgres(_) => postgres::CONTROL,
    };
    list.iter()
        .filter(|m| m.version < version)
        .map(|m| dialect.render(m.sql))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Dialect, Migration, postgres, sqlite};

    fn files(store: &str) -> Vec<String> {
        let dir = format!("{}/migrations/{store}", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The files a store's lists name: a shared text, or one per backend.
    fn listed(lite: &[Migration], pg: &[Migration]) -> Vec<String> {
        let mut out = Vec::new();
        for (a, b) in lite.iter().zip(pg) {
            if a.sql == b.sql {
                out.push(format!("{}.sql", a.name));
            } else {
                out.push(format!("{}.postgres.sql", a.name));
                out.push(format!("{}.sqlite.sql", a.name));
            }
        }
        out.sort();
        out
    }

    /// The migration files are exactly those listed, numbered 1, 2, … as their names say, and
    /// every placeholder is replaced on both backends.
    #[test]
    fn the_one_list_names_every_file_and_renders_on_both_backends() {
        let stores = [
            ("records", sqlite::RECORDS, postgres::RECORDS),
            ("audit", sqlite::AUDIT, postgres::AUDIT),
            ("control", sqlite::CONTROL, postgres::CONTROL),
        ];
        for (store, lite, pg) in stores {
            assert_eq!(files(store), listed(lite, pg), "{store}");
            for (i, (a, b)) in lite.iter().zip(pg).enumerate() {
                let n = i64::try_from(i).unwrap() + 1;
                assert_eq!((a.version, b.version, a.name), (n, n, b.name), "{store}");
                assert!(a.name.starts_with(&format!("{n:04}_")), "{}", a.name);
                for sql in [
                    Dialect::Sqlite.render(a.sql),
                    Dialect::Postgres("s").render(b.sql),
                ] {
                    assert!(!sql.contains('{') && !sql.trim().is_empty(), "{}", a.name);
                }
            }
        }
    }

    #[test]
    fn dialects_say_the_same_table_in_their_words() {
        let sql = "CREATE TABLE {schema}.t (a {int}, b {bytes}, c {bool}){without_rowid};";
        assert_eq!(
            Dialect::Sqlite.render(sql),
            "CREATE TABLE t (a INTEGER, b BLOB, c INTEGER) WITHOUT ROWID;"
        );
        assert_eq!(
            Dialect::Postgres("p1_control").render(sql),
            "CREATE TABLE p1_control.t (a BIGINT, b BYTEA, c BOOLEAN);"
        );
    }
}
