//! The PostgreSQL store's foundation (issue 15) against a real cluster
//! (`pg::PgCluster`): connecting, TLS modes, `schema.postgres.sql` and its
//! migration, that the schema stays the same as SQLite's `schema.sql`, and that
//! every SQLite statement has a PostgreSQL counterpart that prepares (a few run for real).
//! These apply to PostgreSQL only: SQLite's counterparts are the unit tests
//! in `src/store`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use listgate::store::postgres::{self as pg, Migrated, PgError};
use postgres::Client;
use postgres::error::SqlState;

use crate::pg::PgCluster;

fn connect(cluster: &PgCluster) -> Client {
    Client::connect(&cluster.url(), postgres::NoTls).unwrap_or_else(|e| panic!("{e}"))
}

/// Migrates the cluster's database as listgate does at start.
fn migrate(cluster: &PgCluster) -> Result<Migrated, PgError> {
    pg::migrate(&pg::connect(&cluster.url(), None).unwrap_or_else(|e| panic!("{e}")))
}

/// Names of one kind of object in the `public` schema.
fn names(client: &mut Client, sql: &str) -> BTreeSet<String> {
    client.query(sql, &[]).unwrap().iter().map(|row| row.get(0)).collect()
}

fn tables(client: &mut Client) -> BTreeSet<String> {
    names(client, "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
}

#[test]
fn migrating_an_empty_postgres_database_creates_every_table_and_records_the_schema_version() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    assert!(tables(&mut client).is_empty());

    assert_eq!(migrate(&cluster).unwrap(), Migrated::Applied { from: 0 });

    let expected = [
        "anchors",
        "consent_texts",
        "daily_stats",
        "declined_addresses",
        "form_pages",
        "imports",
        "inbox_mails",
        "legal_holds",
        "mail_renderings",
        "outbox",
        "proof_events",
        "schema_version",
        "subscriptions",
        "webhook_calls",
    ];
    assert_eq!(tables(&mut client), expected.iter().map(|t| t.to_string()).collect());
    let versions: Vec<i32> =
        client.query("SELECT version FROM schema_version", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    // The same number as SQLite's `PRAGMA user_version` (5 today): both
    // files describe the same tables.
    assert_eq!(pg::SCHEMA_VERSION, listgate::store::SCHEMA_VERSION);
    assert_eq!(versions, [pg::SCHEMA_VERSION]);
    // The upgrade steps' `ADD COLUMN IF NOT EXISTS … REFERENCES` add no
    // second foreign key to a column the table already had.
    let page_keys: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'subscriptions'::regclass AND contype = 'f'
             AND confrelid = 'form_pages'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(page_keys, 1);
}

#[test]
fn a_version_4_postgres_database_gets_the_legal_holds_table_and_keeps_its_rows() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    migrate(&cluster).unwrap();
    // Version 4 had no legal holds: the file's CREATE … IF NOT EXISTS, run
    // again for the older version, is the upgrade.
    client
        .batch_execute(
            "DROP TABLE legal_holds; UPDATE schema_version SET version = 4;
             INSERT INTO consent_texts (sha256, text, first_seen) VALUES ('c', 'Yes.', 't');
             INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
                 VALUES ('newsletter', 'a@example.org', 'a@example.org', 'pending', 'c', 't', '192.0.2.1');",
        )
        .unwrap();
    assert!(!tables(&mut client).contains("legal_holds"));

    assert_eq!(migrate(&cluster).unwrap(), Migrated::Applied { from: 4 });

    assert!(tables(&mut client).contains("legal_holds"));
    let held = client
        .execute(
            "INSERT INTO legal_holds (subscription_id, reason, held_at) SELECT id, 'Abmahnung', 't' FROM subscriptions",
            &[],
        )
        .unwrap();
    assert_eq!(held, 1, "the version 4 row is still there and can be held");
}

#[test]
fn a_second_postgres_migration_changes_nothing() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    migrate(&cluster).unwrap();
    client.execute("INSERT INTO consent_texts (sha256, text, first_seen) VALUES ('c', 'Yes.', 't')", &[]).unwrap();
    let catalog = "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace";
    let objects: i64 = client.query_one(catalog, &[]).unwrap().get(0);

    assert_eq!(migrate(&cluster).unwrap(), Migrated::UpToDate);

    assert_eq!(client.query_one(catalog, &[]).unwrap().get::<_, i64>(0), objects);
    let kept: i64 = client.query_one("SELECT count(*) FROM consent_texts", &[]).unwrap().get(0);
    assert_eq!(kept, 1);
    // The schema file itself is idempotent too, as schema.sql is.
    client.batch_execute(pg::SCHEMA).unwrap();
    assert_eq!(client.query_one(catalog, &[]).unwrap().get::<_, i64>(0), objects);
}

#[test]
fn two_nodes_migrating_one_postgres_database_at_once_both_succeed_and_it_is_applied_once() {
    let cluster = PgCluster::start();
    let nodes = 4;
    let start = Arc::new(Barrier::new(nodes));
    let url = cluster.url();
    let migrations: Vec<_> = (0..nodes)
        .map(|_| {
            let (start, url) = (start.clone(), url.clone());
            std::thread::spawn(move || {
                let client = pg::connect(&url, None).unwrap();
                start.wait();
                pg::migrate(&client).map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut outcomes: Vec<Migrated> =
        migrations.into_iter().map(|m| m.join().unwrap().unwrap_or_else(|e| panic!("a node failed: {e}"))).collect();
    outcomes.sort_by_key(|m| *m != Migrated::Applied { from: 0 });
    assert_eq!(outcomes[0], Migrated::Applied { from: 0 });
    assert!(outcomes[1..].iter().all(|m| *m == Migrated::UpToDate), "{outcomes:?}");
    let rows: i64 = connect(&cluster).query_one("SELECT count(*) FROM schema_version", &[]).unwrap().get(0);
    assert_eq!(rows, 1);
}

#[test]
fn a_postgres_database_of_a_newer_schema_version_is_refused_naming_both_versions() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    migrate(&cluster).unwrap();
    let newer = pg::SCHEMA_VERSION + 1;
    client.execute("UPDATE schema_version SET version = $1", &[&newer]).unwrap();

    let refused = migrate(&cluster).unwrap_err();

    assert!(matches!(refused, PgError::TooNew { found } if found == newer), "{refused:?}");
    let message = refused.to_string();
    let (named_newer, named_ours) = (format!("version {newer}"), format!("({})", pg::SCHEMA_VERSION));
    assert!(message.contains(&named_newer) && message.contains(&named_ours), "{message}");
    assert!(message.contains("upgrade listgate"), "{message}");
    let version: i32 = client.query_one("SELECT version FROM schema_version", &[]).unwrap().get(0);
    assert_eq!(version, newer, "a refused migration changes nothing");
}

#[test]
fn postgres_refuses_to_edit_delete_or_truncate_proof_events_and_allows_only_erasure() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    migrate(&cluster).unwrap();
    let id: i64 = client
        .query_one(
            "INSERT INTO proof_events (subscription_id, at, kind, ip, detail, key_id, digest, link)
             VALUES (1, 't', 'signup', '1.2.3.4', '{}', 1, 'd', 'l') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    let refusals = [
        "DELETE FROM proof_events WHERE id = $1",
        "UPDATE proof_events SET ip = '9.9.9.9' WHERE id = $1",
        "UPDATE proof_events SET link = 'forged', erased = 1, subscription_id = NULL, at = NULL, kind = NULL,
             ip = NULL, detail = NULL WHERE id = $1",
    ];
    for sql in refusals {
        let refused = client.execute(sql, &[&id]).unwrap_err();
        assert!(
            refused.as_db_error().is_some_and(|e| e.message() == "proof events are append-only"),
            "{sql}: {refused}"
        );
    }
    let truncate = client.batch_execute("TRUNCATE proof_events").unwrap_err();
    assert!(truncate.as_db_error().is_some_and(|e| e.message() == "proof events are append-only"), "{truncate}");

    // Erasure blanks the personal columns and keeps the chain's link.
    client
        .execute(
            "UPDATE proof_events SET erased = 1, subscription_id = NULL, at = NULL, kind = NULL, ip = NULL,
                 detail = NULL WHERE id = $1",
            &[&id],
        )
        .unwrap();
    let row = client.query_one("SELECT erased, ip, link FROM proof_events WHERE id = $1", &[&id]).unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, Option<String>>(1), row.get::<_, String>(2)), (1, None, "l".into()));
}

#[test]
fn postgres_allows_one_live_subscription_per_address_and_list() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    migrate(&cluster).unwrap();
    client.execute("INSERT INTO consent_texts (sha256, text, first_seen) VALUES ('c', 'Yes.', 't')", &[]).unwrap();
    let insert = "INSERT INTO subscriptions (list_id, email, email_key, status, consent_sha256, signup_at, signup_ip)
                  VALUES ($1, $2, $2, $3, 'c', 't', '192.0.2.1') RETURNING id";
    let mut subscribe = |list: &str, key: &str, status: &str| {
        client.query_one(insert, &[&list, &key, &status]).map(|row| row.get::<_, i64>(0))
    };
    let is_second_live = |e: &postgres::Error| {
        e.code() == Some(&SqlState::UNIQUE_VIOLATION)
            && e.as_db_error().and_then(|d| d.constraint()) == Some("subscriptions_one_live")
    };
    let first = subscribe("news", "a@example.org", "pending").unwrap();
    let twice = subscribe("news", "a@example.org", "confirmed").unwrap_err();
    assert!(is_second_live(&twice), "{twice}");
    // Another list, or another address, is fine.
    subscribe("other", "a@example.org", "pending").unwrap();
    subscribe("news", "b@example.org", "pending").unwrap();
    // Unsubscribed ones stay beside a new live one, which cannot be revived next to it.
    client.execute("UPDATE subscriptions SET status = 'unsubscribed' WHERE id = $1", &[&first]).unwrap();
    let second = client.query_one(insert, &[&"news", &"a@example.org", &"pending"]).unwrap().get::<_, i64>(0);
    client.execute("UPDATE subscriptions SET status = 'confirmed' WHERE id = $1", &[&second]).unwrap();
    let revive = client.execute("UPDATE subscriptions SET status = 'pending' WHERE id = $1", &[&first]).unwrap_err();
    assert!(is_second_live(&revive), "{revive}");
}

#[test]
fn postgres_sslmode_require_against_a_server_without_tls_fails_clearly_and_never_falls_back() {
    let cluster = PgCluster::start();
    let url = |mode: &str| format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}", cluster.port());

    let refused = pg::connect(&url("require"), None).err().expect("refused");

    let message = refused.to_string();
    assert!(matches!(refused, PgError::Connect { sslmode: "require", .. }), "{refused:?}");
    assert!(message.contains("server does not support TLS"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", cluster.port())) && message.contains("never falls back"),
        "{message}"
    );
    // No session was opened in clear text behind the error.
    let client = pg::connect(&url("disable"), None).unwrap();
    let sessions: i64 = client
        .query_one_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'listgate'", &[])
        .unwrap()
        .get(0);
    assert_eq!(sessions, 1, "only this one, unencrypted on purpose");
    // `prefer` takes the clear text this server offers, as documented.
    let preferred = pg::connect(&url("prefer"), None).unwrap();
    let ssl: bool =
        preferred.query_one_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
    assert!(!ssl);
    // Modes listgate does not know are refused before connecting, naming the option.
    let unknown = pg::connect(&url("verify-full"), None).err().expect("refused");
    assert!(matches!(unknown, PgError::Url(_)) && unknown.to_string().contains("sslmode"), "{unknown}");
}

#[test]
fn postgres_sslmode_require_verifies_the_certificate_against_the_ca_file_and_the_host() {
    let (_ca_dir, ca, cert, key) = crate::mail_delivery::private_ca();
    let cluster = PgCluster::start_with_tls(&cert, &key);
    let url = |host: &str, mode: &str| format!("postgres://postgres@{host}:{}/postgres?sslmode={mode}", cluster.port());

    let client = pg::connect(&url("127.0.0.1", "require"), Some(&ca)).unwrap_or_else(|e| panic!("{e}"));
    let ssl: bool =
        client.query_one_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
    assert!(ssl, "the session is encrypted");

    // A certificate from a CA listgate was not given: refused, for
    // `prefer` too (it falls back only when the server offers no TLS).
    for mode in ["require", "prefer"] {
        let refused = pg::connect(&url("127.0.0.1", mode), None).err().expect("an unknown issuer");
        assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
    }
    // The right CA, but the certificate does not name the host connected to.
    let wrong_name = pg::connect(&url("localhost", "require"), Some(&ca)).err().expect("a name mismatch");
    assert!(wrong_name.to_string().contains("not valid for name \"localhost\""), "{wrong_name}");
}

#[test]
fn every_postgres_statement_prepares() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    migrate(&cluster).unwrap();
    for (name, sql) in pg::queries::ALL {
        client.prepare(sql).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_restarted_postgres_cluster_keeps_committed_rows_and_cuts_old_connections() {
    let cluster = PgCluster::start();
    let mut before = connect(&cluster);
    migrate(&cluster).unwrap();
    before.execute("INSERT INTO consent_texts (sha256, text, first_seen) VALUES ('c', 'Yes.', 't')", &[]).unwrap();

    cluster.restart();

    assert!(before.query_one("SELECT 1", &[]).is_err(), "a fast restart ends every session");
    let kept: i64 = connect(&cluster).query_one("SELECT count(*) FROM consent_texts", &[]).unwrap().get(0);
    assert_eq!(kept, 1);
}

/// One schema's shape, by name: tables with their columns (type and whether
/// NULL is allowed), indexes, triggers.
#[derive(Debug, Default)]
struct Shape {
    columns: BTreeMap<String, BTreeSet<(String, String, bool)>>,
    indexes: BTreeSet<String>,
    triggers: BTreeSet<String>,
}

fn sqlite_shape() -> Shape {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(listgate::store::SCHEMA).unwrap();
    let strings = |sql: &str| -> Vec<String> {
        let mut statement = conn.prepare(sql).unwrap();
        statement.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let mut shape = Shape::default();
    for table in strings("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'") {
        let mut statement = conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)").unwrap();
        let columns = statement
            .query_map([&table], |r| {
                let sqlite_type: String = r.get(1)?;
                // SQLite's storage classes as PostgreSQL spells them.
                let pg_type = match sqlite_type.as_str() {
                    "INTEGER" => "bigint",
                    "TEXT" => "text",
                    "BLOB" => "bytea",
                    other => panic!("a column type the comparison does not know: {other}"),
                };
                // A primary key column is never NULL (SQLite's rowid alias
                // and WITHOUT ROWID keys), whatever `notnull` says.
                let nullable = !r.get::<_, bool>(2)? && r.get::<_, i64>(3)? == 0;
                Ok((r.get::<_, String>(0)?, pg_type.to_owned(), nullable))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        shape.columns.insert(table, columns);
    }
    shape.indexes =
        strings("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL").into_iter().collect();
    shape.triggers = strings("SELECT name FROM sqlite_schema WHERE type = 'trigger'").into_iter().collect();
    shape
}

fn postgres_shape(client: &mut Client) -> Shape {
    let mut shape = Shape::default();
    let columns = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'YES'
             FROM information_schema.columns WHERE table_schema = 'public'",
            &[],
        )
        .unwrap();
    for row in columns {
        shape.columns.entry(row.get(0)).or_default().insert((row.get(1), row.get(2), row.get(3)));
    }
    // Primary keys' own indexes are part of the table, as SQLite's are.
    shape.indexes = names(
        client,
        "SELECT i.indexname::text FROM pg_indexes i
         WHERE i.schemaname = 'public' AND NOT EXISTS (
             SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.indexname))::regclass AND c.contype = 'p')",
    );
    shape.triggers = names(
        client,
        "SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal
         AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)",
    );
    shape
}

/// What PostgreSQL has that SQLite keeps elsewhere, and the SQLite triggers
/// an index replaces there (schema.postgres.sql says why).
const ONLY_IN_POSTGRES_TABLES: &[&str] = &["schema_version"]; // SQLite: PRAGMA user_version
const ONLY_IN_POSTGRES_TRIGGERS: &[&str] = &["proof_events_no_truncate", "anchors_no_truncate"]; // SQLite has no TRUNCATE
const TRIGGERS_AS_INDEXES: &[(&str, &str)] = &[
    ("subscriptions_one_live_insert", "subscriptions_one_live"),
    ("subscriptions_one_live_update", "subscriptions_one_live"),
];

#[test]
fn schema_postgres_sql_has_every_table_column_index_and_trigger_of_schema_sql() {
    let cluster = PgCluster::start();
    let mut client = connect(&cluster);
    migrate(&cluster).unwrap();
    let sqlite = sqlite_shape();
    let mut postgres = postgres_shape(&mut client);
    assert!(!sqlite.columns.is_empty() && !sqlite.indexes.is_empty() && !sqlite.triggers.is_empty());

    for table in ONLY_IN_POSTGRES_TABLES {
        assert!(postgres.columns.remove(*table).is_some(), "{table}");
    }
    let flat = |shape: &Shape| -> BTreeSet<String> {
        let columns = shape.columns.iter().flat_map(|(table, columns)| columns.iter().map(move |c| (table, c)));
        columns
            .map(|(table, (column, kind, nullable))| format!("{table}.{column} {kind} nullable={nullable}"))
            .collect()
    };
    assert_same("tables and columns", &flat(&postgres), &flat(&sqlite));

    let mut expected_triggers = sqlite.triggers.clone();
    let mut expected_indexes = sqlite.indexes.clone();
    for (trigger, index) in TRIGGERS_AS_INDEXES {
        assert!(expected_triggers.remove(*trigger), "{trigger} is no longer in schema.sql");
        expected_indexes.insert(index.to_string());
    }
    expected_triggers.extend(ONLY_IN_POSTGRES_TRIGGERS.iter().map(|t| t.to_string()));
    assert_same("indexes", &postgres.indexes, &expected_indexes);
    assert_same("triggers", &postgres.triggers, &expected_triggers);
}

/// Fails naming only what differs, not two whole schemas.
fn assert_same(what: &str, postgres: &BTreeSet<String>, expected: &BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(postgres).collect();
    let extra: Vec<_> = postgres.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: schema.postgres.sql lacks {missing:?} and has {extra:?}, unlike schema.sql"
    );
}

/// Names in a statement list.
fn statement_names(all: &'static [(&'static str, &'static str)]) -> BTreeSet<&'static str> {
    all.iter().map(|(name, _)| *name).collect()
}

#[test]
fn every_sqlite_statement_has_a_postgres_counterpart_of_the_same_name() {
    let sqlite = statement_names(listgate::store::queries::ALL);
    let postgres = statement_names(pg::queries::ALL);
    let exceptions = statement_names(pg::queries::SQLITE_ONLY);

    let unknown: Vec<_> = exceptions.difference(&sqlite).collect();
    assert!(unknown.is_empty(), "SQLITE_ONLY names statements SQLite does not have: {unknown:?}");
    let translated_anyway: Vec<_> = exceptions.intersection(&postgres).collect();
    assert!(translated_anyway.is_empty(), "listed as SQLite-only but translated: {translated_anyway:?}");
    let missing: Vec<_> = sqlite.difference(&postgres).filter(|name| !exceptions.contains(*name)).collect();
    assert!(missing.is_empty(), "SQLite statements without a PostgreSQL counterpart: {missing:?}");
}

/// A migrated cluster and a client on it, for the statements run for real.
fn migrated() -> (PgCluster, Client) {
    let cluster = PgCluster::start();
    let client = connect(&cluster);
    migrate(&cluster).unwrap();
    (cluster, client)
}

const T: &str = "2026-01-01T00:00:00.000Z";

#[test]
fn a_consent_text_inserted_twice_into_postgres_is_stored_once_and_keeps_its_first_value() {
    let (_cluster, mut client) = migrated();
    let insert = pg::queries::INSERT_CONSENT_TEXT;

    let first = client.execute(insert, &[&"c", &"Yes, mail me.", &T]).unwrap();
    let again = client.execute(insert, &[&"c", &"Yes, mail me.", &"2026-02-01T00:00:00.000Z"]).unwrap();

    assert_eq!((first, again), (1, 0), "the second insert is ignored, not an error");
    let rows = client.query("SELECT text, first_seen FROM consent_texts", &[]).unwrap();
    let stored: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(stored, [("Yes, mail me.".to_owned(), T.to_owned())]);
}

/// Inserts a pending subscription of `email` to `list` and returns its id.
fn insert_subscription(
    client: &mut impl postgres::GenericClient,
    list: &str,
    email: &str,
) -> Result<i64, postgres::Error> {
    let row = client.query_one(
        pg::queries::INSERT_SUBSCRIPTION,
        &[&list, &email, &email, &None::<String>, &"c", &T, &"192.0.2.1", &None::<String>],
    )?;
    Ok(row.get(0))
}

/// The consent text `c` and the rendering `r` that subscriptions and queued
/// mails refer to.
fn insert_consent_and_rendering(client: &mut Client) {
    client.execute(pg::queries::INSERT_CONSENT_TEXT, &[&"c", &"Yes.", &T]).unwrap();
    let rendering: [&(dyn postgres::types::ToSql + Sync); 9] =
        [&"r", &1_i64, &"list@example.org", &"List <list@example.org>", &None::<String>, &"Confirm", &"t", &"h", &T];
    client.execute(pg::queries::INSERT_RENDERING, &rendering).unwrap();
}

#[test]
fn a_postgres_subscription_insert_returns_its_id_and_refuses_a_second_live_one() {
    let (_cluster, mut client) = migrated();
    client.execute(pg::queries::INSERT_CONSENT_TEXT, &[&"c", &"Yes.", &T]).unwrap();

    let first = insert_subscription(&mut client, "news", "a@example.org").unwrap();
    let other = insert_subscription(&mut client, "news", "b@example.org").unwrap();

    assert!(first > 0 && other > first, "{first}, {other}");
    let row = client.query_one(pg::queries::SELECT_SUBSCRIPTION, &[&first]).unwrap();
    assert_eq!((row.get::<_, String>(2), row.get::<_, String>(4)), ("a@example.org".to_owned(), "pending".to_owned()));
    let twice = insert_subscription(&mut client, "news", "a@example.org").unwrap_err();
    assert_eq!(twice.code(), Some(&SqlState::UNIQUE_VIOLATION), "{twice}");
    assert_eq!(twice.as_db_error().and_then(|e| e.constraint()), Some("subscriptions_one_live"));
    // Once unsubscribed, the address may sign up again, under a new id.
    let ended = client.execute(pg::queries::UNSUBSCRIBE_SUBSCRIPTION, &[&first, &T, &"192.0.2.1", &"page"]).unwrap();
    assert_eq!(ended, 1);
    let again = insert_subscription(&mut client, "news", "a@example.org").unwrap();
    assert!(again > other);
}

#[test]
fn two_postgres_connections_claiming_due_mails_at_once_get_disjoint_rows_without_waiting() {
    let (cluster, mut setup) = migrated();
    insert_consent_and_rendering(&mut setup);
    let mut queued = BTreeSet::new();
    for n in 0..4 {
        let subscription = insert_subscription(&mut setup, "news", &format!("{n}@example.org")).unwrap();
        setup
            .execute(
                pg::queries::INSERT_OUTBOX,
                &[
                    &subscription,
                    &"r",
                    &format!("{n}@example.org"),
                    &"https://l/c",
                    &format!("<{n}@l>"),
                    &"date",
                    &T,
                    &"when",
                    &"where",
                ],
            )
            .unwrap();
        let id: i64 = setup.query_one("SELECT max(id) FROM outbox", &[]).unwrap().get(0);
        queued.insert(id);
    }
    let (now, lease_until) = ("2026-01-01T00:01:00.000Z", "2026-01-01T00:11:00.000Z");
    let claimed_ids = |rows: &[postgres::Row]| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<BTreeSet<i64>>();

    // Node A claims two and keeps its transaction open (delivering).
    let mut a = connect(&cluster);
    let mut a_tx = a.transaction().unwrap();
    let a_rows = a_tx.query(pg::queries::CLAIM_DUE_MAILS, &[&now, &lease_until, &2_i64]).unwrap();
    // Node B claims as many as it can meanwhile; it must not wait for A's locks.
    let mut b = connect(&cluster);
    b.batch_execute("SET lock_timeout = '2s'").unwrap();
    let b_rows = b.query(pg::queries::CLAIM_DUE_MAILS, &[&now, &lease_until, &10_i64]).unwrap_or_else(|e| {
        panic!("B waited for A's rows instead of skipping them: {e}");
    });

    let (a_ids, b_ids) = (claimed_ids(&a_rows), claimed_ids(&b_rows));
    assert_eq!(a_ids.len(), 2);
    assert!(a_ids.is_disjoint(&b_ids), "A {a_ids:?}, B {b_ids:?}");
    assert_eq!(a_ids.union(&b_ids).copied().collect::<BTreeSet<_>>(), queued);
    assert!(b_rows.iter().all(|r| r.get::<_, i64>(9) == 1), "each claim counts one attempt");
    a_tx.commit().unwrap();
    // Claimed rows are leased until `lease_until`: nothing is due again before.
    let again = b.query(pg::queries::CLAIM_DUE_MAILS, &[&now, &lease_until, &10_i64]).unwrap();
    assert!(again.is_empty(), "{:?}", claimed_ids(&again));
    let after_lease =
        b.query(pg::queries::CLAIM_DUE_MAILS, &[&lease_until, &"2026-01-01T00:21:00.000Z", &10_i64]).unwrap();
    assert_eq!(claimed_ids(&after_lease), queued);
}

#[test]
fn postgres_upserts_sums_and_optional_filters_give_what_sqlite_gives() {
    let (_cluster, mut client) = migrated();
    let q = |client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]| {
        client.query(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    // A decline block already running longer is kept (SQLite's scalar max).
    let (later, sooner) = ("2026-03-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z");
    q(&mut client, pg::queries::UPSERT_DECLINED, &[&"h", &later]);
    q(&mut client, pg::queries::UPSERT_DECLINED, &[&"h", &sooner]);
    assert_eq!(q(&mut client, pg::queries::IS_DECLINED, &[&"h", &"2026-02-15T00:00:00.000Z"]).len(), 1);
    // The inbox count reads as an i64 (sum of BIGINT is NUMERIC), 0 when none.
    let inbox = vec![7_u8; 16];
    let count =
        |client: &mut Client| -> i64 { q(client, pg::queries::COUNT_INBOX_MAILS_SINCE, &[&inbox, &T])[0].get(0) };
    assert_eq!(count(&mut client), 0);
    q(&mut client, pg::queries::INSERT_INBOX_MAIL, &[&inbox, &T]);
    q(&mut client, pg::queries::INSERT_INBOX_MAIL, &[&inbox, &T]);
    assert_eq!(count(&mut client), 2);
    // Daily counts add up under the upsert.
    q(&mut client, pg::queries::COUNT_SIGNUP, &[&"2026-01-01", &"news"]);
    q(&mut client, pg::queries::COUNT_SIGNUP, &[&"2026-01-01", &"news"]);
    let stats = q(&mut client, pg::queries::DAILY_STATS_SINCE, &[&"2026-01-01"]);
    assert_eq!(stats[0].get::<_, i64>(2), 2);
    // The export's filters: NULL means any; `since` compares the latest event.
    q(&mut client, pg::queries::INSERT_CONSENT_TEXT, &[&"c", &"Yes.", &T]);
    let a = insert_subscription(&mut client, "news", "a@example.org").unwrap();
    let b = insert_subscription(&mut client, "other", "b@example.org").unwrap();
    q(&mut client, pg::queries::CONFIRM_SUBSCRIPTION, &[&b, &later, &"192.0.2.2"]);
    let none = None::<String>;
    let ids = |rows: Vec<postgres::Row>| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>();
    assert_eq!(ids(q(&mut client, pg::queries::EXPORT_SUBSCRIPTIONS, &[&none, &none, &none])), [a, b]);
    assert_eq!(ids(q(&mut client, pg::queries::EXPORT_SUBSCRIPTIONS, &[&Some("news"), &none, &none])), [a]);
    assert_eq!(ids(q(&mut client, pg::queries::EXPORT_SUBSCRIPTIONS, &[&none, &none, &Some(sooner)])), [b]);
    let counted: i64 =
        q(&mut client, pg::queries::COUNT_EXPORT_SUBSCRIPTIONS, &[&none, &Some("pending"), &none])[0].get(0);
    assert_eq!(counted, 1);
    // The purge plan counts the pending signup past its cutoff.
    let plan = q(&mut client, pg::queries::PURGE_PLAN, &[&later, &later]);
    let plan: Vec<(String, String, i64)> = plan.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(plan, [("news".to_owned(), "pending".to_owned(), 1)]);
}

/// The writer sends writes whose answer a job does not need without
/// waiting (`store::postgres::pipeline`). Their failure must still be the
/// failing job's own, reported no later than its savepoint's release, and
/// a transaction in which one failed must never report a commit.
#[test]
fn a_write_sent_without_waiting_that_fails_fails_its_own_job_and_never_commits_silently() {
    use listgate::store::db::{Db, NewMail};
    let (cluster, mut setup) = migrated();
    setup.execute(pg::queries::INSERT_CONSENT_TEXT, &[&"c", &"Yes.", &T]).unwrap();
    let subscription = insert_subscription(&mut setup, "news", "a@example.org").unwrap();
    let now = listgate::clock::Timestamp::from_stored(T).unwrap();
    // No rendering "missing" exists: the outbox row breaks its foreign key.
    let mail = |rendering| NewMail {
        subscription_id: subscription,
        rendering_sha256: rendering,
        to_email: "a@example.org",
        link: "https://l/c",
        message_id: "<1@l>",
        date_header: "date",
        now,
        consent_when: "when",
        consent_where: "where",
    };
    let session = pg::open_session(&cluster.url(), None).unwrap();
    let queued = |c: &mut Client| -> i64 { c.query_one("SELECT count(*) FROM outbox", &[]).unwrap().get(0) };

    // One batch, three jobs: the failing one in the middle.
    session.begin_write().unwrap();
    session.savepoint();
    session.count_daily(listgate::store::db::DailyCount::Request, "2026-01-01", "news").unwrap();
    session.release_savepoint().unwrap();
    session.savepoint();
    session.insert_outbox(&mail("missing")).expect("sent, not yet answered");
    let failed = session.release_savepoint().expect_err("the job hears of its own failed write");
    assert!(failed.to_string().contains("outbox_rendering_sha256_fkey"), "{failed}");
    session.rollback_to_savepoint().unwrap();
    session.savepoint();
    session.count_daily(listgate::store::db::DailyCount::Signup, "2026-01-01", "news").unwrap();
    session.release_savepoint().unwrap();
    session.commit().unwrap();
    let counted: (i64, i64) = {
        let row = setup.query_one("SELECT requests, signups FROM daily_stats", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(counted, (1, 1), "the jobs before and after the failed one committed");
    assert_eq!(queued(&mut setup), 0);

    // A failed write the commit is the first to wait for: an error, and nothing is kept.
    session.begin_write().unwrap();
    session.count_daily(listgate::store::db::DailyCount::Request, "2026-01-01", "news").unwrap();
    session.insert_outbox(&mail("missing")).unwrap();
    let refused = session.commit().expect_err("PostgreSQL answers this COMMIT with ROLLBACK, not an error");
    assert!(refused.to_string().contains("outbox_rendering_sha256_fkey"), "{refused}");
    let requests: i64 = setup.query_one("SELECT requests FROM daily_stats", &[]).unwrap().get(0);
    assert_eq!(requests, 1, "the batch's other write was rolled back with it");
    // The session is usable again.
    session.begin_write().unwrap();
    session.count_daily(listgate::store::db::DailyCount::Request, "2026-01-01", "news").unwrap();
    session.commit().unwrap();
    let requests: i64 = setup.query_one("SELECT requests FROM daily_stats", &[]).unwrap().get(0);
    assert_eq!(requests, 2);
}

/// The statements that end one mail's or webhook call's delivery name it by
/// id: they must find it through the primary key at any backlog. With
/// `WHERE id = $1 AND state = 'queued'`, PostgreSQL also matched the partial
/// index of queued rows (`outbox_due`) and, on a young table whose
/// statistics lag, chose it: each delivered mail scanned the whole backlog
/// (`auto_explain` under `benches/pg_profile.sh`: "Index Scan using
/// outbox_due … Rows Removed by Filter: 129", 0.5-0.65 ms a mail under load).
/// Checked for the generic plan a long-lived session settles on and for the
/// custom plans before it, on a table of 300 queued rows never analysed.
#[test]
fn statements_that_finish_one_delivery_find_the_row_by_its_primary_key_at_any_backlog() {
    let (_cluster, mut client) = migrated();
    insert_consent_and_rendering(&mut client);
    let subscription = insert_subscription(&mut client, "news", "a@example.org").unwrap();
    for n in 0..300 {
        let link = format!("https://l/c{n}");
        let message_id = format!("<{n}@l>");
        client
            .execute(
                pg::queries::INSERT_OUTBOX,
                &[&subscription, &"r", &"a@example.org", &link, &message_id, &"d", &T, &"w", &"w"],
            )
            .unwrap();
        client.execute(pg::queries::INSERT_WEBHOOK_CALL, &[&subscription, &"confirmed", &T]).unwrap();
    }
    let finishing = [
        ("MARK_MAIL_SENT", pg::queries::MARK_MAIL_SENT, "outbox_pkey"),
        ("MARK_MAIL_RETRY", pg::queries::MARK_MAIL_RETRY, "outbox_pkey"),
        ("MARK_MAIL_FAILED", pg::queries::MARK_MAIL_FAILED, "outbox_pkey"),
        ("MARK_WEBHOOK_SENT", pg::queries::MARK_WEBHOOK_SENT, "webhook_calls_pkey"),
        ("MARK_WEBHOOK_RETRY", pg::queries::MARK_WEBHOOK_RETRY, "webhook_calls_pkey"),
        ("MARK_WEBHOOK_FAILED", pg::queries::MARK_WEBHOOK_FAILED, "webhook_calls_pkey"),
    ];
    for mode in ["force_generic_plan", "force_custom_plan"] {
        client.batch_execute(&format!("SET plan_cache_mode = {mode}")).unwrap();
        for (name, sql, key) in finishing {
            let params = client.prepare(sql).unwrap().params().len();
            client.batch_execute(&format!("DEALLOCATE ALL; PREPARE finishing AS {sql}")).unwrap();
            let args = std::iter::once("150".to_owned()).chain((1..params).map(|_| "NULL".to_owned()));
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN EXECUTE finishing({})", args.collect::<Vec<_>>().join(", ")), &[])
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains(key) && !plan.contains("_due"), "{name} ({mode}) does not use {key}:\n{plan}");
        }
    }
}
