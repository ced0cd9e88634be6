#!/bin/sh
# One-shot job (image temporalio/admin-tools): create Temporal's two databases on
# PostgreSQL and bring their schemas to the version this admin-tools image ships.
# Every step is idempotent: `create` accepts an existing database, `setup-schema -v 0.0`
# keeps a newer version, `update-schema` applies only the versions not yet applied.
# So the job runs on every `docker compose up`, and upgrading the pinned image
# upgrades the schema before the server starts.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required (the PostgreSQL password)}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql_tool() {
    # SQL_PASSWORD is read by temporal-sql-tool from the environment (never on argv).
    temporal-sql-tool --plugin postgres12 --endpoint "$POSTGRES_SEEDS" --port "$DB_PORT" \
        --user "$POSTGRES_USER" "$@"
}

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
    db="${pair%%:*}"
    schema="${pair#*:}"
    echo "temporal-schema: database $db (schema $SCHEMA_ROOT/$schema/versioned)"
    sql_tool --database "$db" create
    sql_tool --database "$db" setup-schema -v 0.0
    sql_tool --database "$db" update-schema -d "$SCHEMA_ROOT/$schema/versioned"
done
echo "temporal-schema: done"
