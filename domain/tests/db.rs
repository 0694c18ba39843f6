//! The database layer against a real PostgreSQL: a fresh database per test (`#[sqlx::test]`).

use domain::Database;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn migrating_a_new_database_makes_it_ready(pool: PgPool) {
    let db = Database::from_pool(pool);
    db.migrate()
        .await
        .expect("migrations apply to an empty database");

    let readiness = db.readiness().await.unwrap();
    assert!(readiness.is_ready(), "{readiness:?}");
    assert!(readiness.migrations_expected >= 1);
    assert_eq!(readiness.migrations_applied, readiness.migrations_expected);
    assert!(readiness.instance_id.is_some());
}

#[sqlx::test(migrations = false)]
async fn migrating_twice_is_harmless_and_keeps_the_instance_id(pool: PgPool) {
    let db = Database::from_pool(pool);
    db.migrate().await.unwrap();
    let first = db.readiness().await.unwrap().instance_id;
    db.migrate().await.unwrap();
    assert_eq!(db.readiness().await.unwrap().instance_id, first);
}

#[sqlx::test(migrations = false)]
async fn a_database_missing_a_migration_is_not_ready(pool: PgPool) {
    let db = Database::from_pool(pool.clone());
    db.migrate().await.unwrap();
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let readiness = db.readiness().await.unwrap();
    assert!(!readiness.is_ready());
    assert_eq!(
        readiness.migrations_applied + 1,
        readiness.migrations_expected
    );
}

#[sqlx::test(migrations = false)]
async fn an_unmigrated_database_is_an_error_not_a_panic(pool: PgPool) {
    // No `_sqlx_migrations` table at all: readiness must report an error the caller can show.
    let db = Database::from_pool(pool);
    assert!(db.readiness().await.is_err());
}
