extension PostgresStore {
    /// One schema step; applied steps are recorded in `schema_migrations` and never run again.
    struct Migration: Sendable {
        var version: Int
        var statements: [String]
    }

    /// The key of the transaction-level advisory lock that serialises `migrate()` across processes
    /// ("SomaMigr" in ASCII).
    static let migrationLockKey: Int64 = 0x536F_6D61_4D69_6772

    /// Every schema step, in order. Append new versions; never edit an applied one.
    static let migrations: [Migration] = [
        Migration(
            version: 1,
            statements: [
                """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY,
                    tier TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL,
                    last_seen_at TIMESTAMPTZ NOT NULL
                )
                """,
                """
                CREATE TABLE entries (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    user_id TEXT COLLATE "C" NOT NULL,
                    text TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    analysis_raw TEXT NOT NULL,
                    analysis JSONB NOT NULL GENERATED ALWAYS AS (analysis_raw::jsonb) STORED,
                    model_version TEXT NOT NULL
                )
                """,
                "CREATE INDEX entries_user_created ON entries (user_id, created_at DESC, id DESC)",
                """
                CREATE TABLE idempotency_keys (
                    user_id TEXT NOT NULL,
                    key TEXT NOT NULL,
                    entry_id TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    PRIMARY KEY (user_id, key)
                )
                """,
                """
                CREATE TABLE profiles (
                    user_id TEXT PRIMARY KEY,
                    snapshot_raw TEXT NOT NULL,
                    snapshot JSONB NOT NULL GENERATED ALWAYS AS (snapshot_raw::jsonb) STORED,
                    updated_at BIGINT NOT NULL
                )
                """,
            ]),
        // The erasure log: instances purge their own cache layers of the users erased elsewhere.
        Migration(
            version: 2,
            statements: [
                """
                CREATE TABLE user_erasures (
                    id BIGSERIAL PRIMARY KEY,
                    user_tag TEXT NOT NULL,
                    erased_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )
                """,
                "CREATE INDEX user_erasures_tag ON user_erasures (user_tag, erased_at)",
            ]),
        // The order in which the database received entries: a server-side counter taken by every
        // insert, so the order of arrival can be checked against the order of acknowledgement
        // (docs/RELIABILITY.md); `created_at` cannot show it, being set at acknowledgement.
        // Existing rows are numbered in no particular order (the table is rewritten once).
        Migration(
            version: 3,
            statements: [
                "ALTER TABLE entries ADD COLUMN received BIGINT GENERATED ALWAYS AS IDENTITY"
            ]),
    ]
}
