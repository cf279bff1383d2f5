//! `listgate migrate-store`: a SQLite deployment built through the HTTP
//! interface moves into PostgreSQL (a real cluster, `pg::PgCluster`) with
//! the same export and the same proof chain, and keeps working there.
//! The source is SQLite whatever `LISTGATE_TEST_STORE` says.

use crate::helpers::{TestApp, confirm_token, spawn_app_with};
use crate::pg::PgCluster;

/// A listgate on SQLite, the store `migrate-store` moves from.
async fn spawn_app_on_sqlite() -> TestApp {
    spawn_app_with("ok", |config| config.database.url = None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_sqlite_deployment_into_postgres_with_the_same_export_and_chain() {
    let app = spawn_app_on_sqlite().await;
    let anna = app.confirmed_subscriber("Anna.Mueller+news@Bücher.example", Some("Anna Müller")).await;
    let bob = app.confirmed_subscriber("BOB@example.org", None).await;
    assert_eq!(app.one_click(bob).await.status(), 200);
    assert!(app.cli(&["hold", "bob@example.org", "--reason", "Abmahnung, Az. 12/26"]).status.success());
    app.signup_and_get_token("pending@example.org").await;
    let (_, declined) = app.signup_and_get_token("declined@example.org").await;
    let decline = app.post_form("/confirm", &[("token", &declined), ("action", "decline")]).await;
    assert_eq!(decline.status(), 200);

    let export = ["export", "--status", "all", "--format", "jsonl"];
    let export_before = app.cli(&export).stdout;
    let verify_before = app.cli(&["verify"]).stdout;
    assert!(String::from_utf8_lossy(&export_before).lines().count() == 3, "anna, bob and the pending one");

    let cluster = PgCluster::start();
    let moved = app.cli(&["migrate-store", "--to", &cluster.url()]);
    let said = String::from_utf8_lossy(&moved.stdout);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    assert!(said.contains("moved") && said.contains("verifies on both"), "{said}");

    let on_postgres =
        |args: &[&str]| app.cli_command(args).env("LISTGATE_DATABASE__URL", cluster.url()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&on_postgres(&export).stdout), String::from_utf8_lossy(&export_before));
    assert_eq!(String::from_utf8_lossy(&on_postgres(&["verify"]).stdout), String::from_utf8_lossy(&verify_before));

    // Bob's legal hold moved with him: PostgreSQL's erase refuses him too.
    let refused = on_postgres(&["erase", "bob@example.org", "--yes"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("(reason: Abmahnung, Az. 12/26)"));

    // A second run finds data there and changes nothing.
    let again = app.cli(&["migrate-store", "--to", &cluster.url()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(on_postgres(&export).stdout, export_before);

    // A server on PostgreSQL carries on: old links work, new ids follow the moved ones.
    let url = cluster.url();
    let key_file = app.config.secrets.key_file.clone();
    let moved_app = spawn_app_with("ok", move |config| {
        config.database.url = Some(url);
        config.secrets.key_file = key_file;
    })
    .await;
    assert_eq!(moved_app.one_click(anna).await.status(), 200, "anna's unsubscribe link works on PostgreSQL");
    let shown = moved_app
        .cli_command(&["show", "anna.mueller+news@bücher.example", "--json"])
        .env("LISTGATE_DATABASE__URL", cluster.url())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("unsubscribed"));
    assert_eq!(moved_app.subscribe("new@example.org").await.status(), 200);
    let mails = moved_app.smtp().wait_for_messages(1).await;
    let token = confirm_token(&mails[0]);
    assert_eq!(moved_app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
    let verified = on_postgres(&["verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_refuses_a_target_that_is_not_postgres_and_a_source_that_is() {
    let app = spawn_app_on_sqlite().await;
    let wrong = app.cli(&["migrate-store", "--to", "mysql://db.example/listgate"]);
    assert_eq!(wrong.status.code(), Some(2), "bad usage");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("postgres://"));
    let from_postgres = app
        .cli_command(&["migrate-store", "--to", "postgres://127.0.0.1:1/x"])
        .env("LISTGATE_DATABASE__URL", "postgres://127.0.0.1:1/y")
        .output()
        .unwrap();
    assert_eq!(from_postgres.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&from_postgres.stderr).contains("database.path"));
}
