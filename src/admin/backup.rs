//! `listgate backup FILE`: an online, consistent copy while the server runs
//! (`VACUUM INTO`, which reads one snapshot), checked before it is reported.

use std::path::Path;

use crate::store::Database;

use crate::store::{self, queries};

/// What `backup` says on PostgreSQL, where a copy made by listgate would be
/// the weakest of the operator's options.
pub const POSTGRES_BACKUP: &str = "on PostgreSQL, listgate does not write backups: use the server's own \
(pg_dump for a consistent copy, or base backups with WAL archiving for point-in-time recovery); see docs/deployment.md";

/// Copies the database to `target` (which must not exist) and checks the copy.
pub fn backup(conn: &Database, target: &Path) -> Result<u64, String> {
    if target.exists() {
        return Err(format!("{} already exists; choose a new file", target.display()));
    }
    let conn = match conn {
        Database::Sqlite(conn) => conn,
        Database::Postgres(_) => return Err(POSTGRES_BACKUP.into()),
    };
    let name = target.to_str().ok_or("the backup path must be valid UTF-8")?;
    queries::backup_into(conn, name).map_err(|e| format!("backup failed: {e}"))?;
    crate::files::make_private(target).map_err(|e| format!("cannot make {} private: {e}", target.display()))?;
    let copy = store::open_connection(target).map_err(|e| format!("cannot open the copy: {e}"))?;
    let check = queries::integrity_check(&copy).map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("the copy failed its integrity check: {check}"));
    }
    // The copy is opened in WAL mode like any listgate database; fold it back
    // into one file so it can be moved and archived as is.
    if !queries::truncate_wal(&copy).map_err(|e| e.to_string())? {
        return Err("the copy's WAL could not be folded into it".into());
    }
    drop(copy);
    std::fs::metadata(target).map(|m| m.len()).map_err(|e| e.to_string())
}
