//! `listgate migrate-store`: moves a SQLite deployment into an empty
//! PostgreSQL database, row for row, ids included, so every link, token
//! and chain link stays valid: tokens carry subscription ids, the proof
//! chain is read in id order, and the outbox keeps its Message-IDs.
//!
//! The statements are generated from the tables' columns, as SQLite's
//! `PRAGMA table_info` lists them, instead of being written out per table:
//! the copy is the one place that must name every column of every table,
//! and `schema_matches_sqlite_table_for_table` (tests/api/postgres_store.rs)
//! already holds the two schemas to the same tables and columns, so a
//! column added to both is copied without a change here.
//!
//! Everything happens in one PostgreSQL transaction, read from one SQLite
//! snapshot: an interrupted copy leaves the target empty, and a server
//! still writing to the SQLite file meanwhile cannot make the copy
//! inconsistent (stop it first anyway: what it writes after the snapshot
//! is not moved).

use bytes::BytesMut;
use rusqlite::types::ValueRef;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::PgSession;
use super::pipeline::OwnedParam;
use crate::store::{Result, StoreError};

/// The tables, parents before the rows that refer to them, with whether
/// an `id` identity column must be moved on past the copied ids.
const TABLES: &[(&str, bool)] = &[
    ("consent_texts", false),
    ("mail_renderings", false),
    ("form_pages", false),
    ("subscriptions", true),
    ("imports", false),
    ("legal_holds", false),
    ("outbox", true),
    ("webhook_calls", true),
    ("proof_events", true),
    ("declined_addresses", false),
    ("inbox_mails", false),
    ("daily_stats", false),
    ("anchors", true),
];

/// Rows sent to the server before waiting for their answers.
const SENT_BETWEEN_WAITS: u64 = 2048;

/// Rows copied per table, in [`TABLES`] order.
pub type Copied = Vec<(&'static str, u64)>;

/// Copies every row of `source` into `target`, which must hold none (any
/// row in any table: [`StoreError::NotEmpty`], and nothing is written).
/// `progress` hears each table's name and count when it is done.
pub fn copy_sqlite_into(
    source: &rusqlite::Connection,
    target: &PgSession,
    mut progress: impl FnMut(&str, u64),
) -> Result<Copied> {
    target.batch("BEGIN")?;
    let copied = (|| {
        for (table, _) in TABLES {
            if target.has_rows(table)? {
                return Err(StoreError::NotEmpty(format!("table {table} already holds rows")));
            }
        }
        crate::store::snapshot(source, |source| {
            let mut copied = Vec::new();
            for (table, has_id) in TABLES {
                let rows = copy_table(source, target, table)?;
                if *has_id {
                    target.batch(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table} HAVING count(*) > 0"
                    ))?;
                }
                progress(table, rows);
                copied.push((*table, rows));
            }
            Ok(copied)
        })
    })();
    match copied {
        Ok(copied) => {
            target.batch("COMMIT")?;
            Ok(copied)
        }
        Err(e) => {
            let _ = target.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Copies one table's rows; returns how many.
fn copy_table(source: &rusqlite::Connection, target: &PgSession, table: &str) -> Result<u64> {
    let columns: Vec<String> = source
        .prepare(&format!("PRAGMA table_info({table})"))?
        .query_map([], |r| r.get(1))?
        .collect::<Result<_, _>>()?;
    let list = columns.join(", ");
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = format!("INSERT INTO {table} ({list}) VALUES ({})", placeholders.join(", "));
    // In the first column's order: the id where there is one, so ids arrive rising.
    let mut select = source.prepare(&format!("SELECT {list} FROM {table} ORDER BY 1"))?;
    let mut rows = select.query([])?;
    let mut count = 0;
    target.with_pipeline(|db| -> Result<()> {
        let statement = db.prepare(&insert)?;
        while let Some(row) = rows.next()? {
            let values: Vec<OwnedParam> = (0..columns.len())
                .map(|i| row.get_ref(i).map(|v| Box::new(Value::from(v)) as OwnedParam))
                .collect::<Result<_, _>>()?;
            // Sent without waiting; every few thousand rows, wait for them
            // (a failure stops the copy there), which bounds what is queued.
            db.send(statement.clone(), values);
            count += 1;
            if count % SENT_BETWEEN_WAITS == 0 {
                db.flush()?;
            }
        }
        Ok(db.flush()?)
    })?;
    Ok(count)
}

/// One SQLite value, bound as the PostgreSQL column's type asks.
#[derive(Debug)]
enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Value {
    fn from(value: ValueRef<'_>) -> Value {
        match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Integer(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Integer(i) => i.to_sql(ty, out),
            Value::Real(f) => f.to_sql(ty, out),
            Value::Text(t) => t.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    /// Checked per value in `to_sql`: a SQLite column holds any type.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
