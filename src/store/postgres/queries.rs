//! Every SQL statement the PostgreSQL store runs, each named and documented
//! with its parameters: the counterpart of `store::queries` for SQLite.
//! `tests/api/postgres_store.rs` prepares them all against a real cluster after
//! `migrate`, so a typo fails the tests.
//!
//! For now only what connecting and migrating need; the store interface of
//! issue 15 adds the domain's statements here.

/// Defines each statement as a `pub const` and lists every one of them in
/// `ALL`, so no statement can be left out of the test that prepares them.
/// (The same small macro as SQLite's `queries`: the two lists stay apart.)
macro_rules! statements {
    ($($(#[$doc:meta])* pub const $name:ident: &str = $sql:expr;)+) => {
        $($(#[$doc])* pub const $name: &str = $sql;)+

        /// Every statement, by name, for the test that prepares them all.
        pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $name)),+];
    };
}

statements! {
    /// Params: key (i64). Waits for, then holds until the transaction ends,
    /// the advisory lock `key`: two nodes migrating at once take turns.
    pub const LOCK_FOR_TRANSACTION: &str = "SELECT pg_advisory_xact_lock($1)";

    /// No params. Whether `schema_version` exists (in the search path): a
    /// fresh database has no version table, and reading a missing table
    /// would abort the migration's transaction.
    pub const HAS_SCHEMA_VERSION: &str = "SELECT to_regclass('schema_version') IS NOT NULL";

    /// No params. The recorded schema version (no row: none).
    pub const SELECT_SCHEMA_VERSION: &str = "SELECT version FROM schema_version";

    /// Params: version (i32). Records the schema version in its one row.
    pub const SET_SCHEMA_VERSION: &str = "INSERT INTO schema_version (one, version) VALUES (TRUE, $1)
         ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version";
}
