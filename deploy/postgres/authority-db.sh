#!/bin/sh
# One-shot job (image postgres): the authority's role and database, apart from
# Temporal's, so the worker holds no credential for Temporal's databases. Idempotent:
# the role is created or its password reset to TRIBUTARY_DB_PASSWORD, the database
# created when missing. The worker creates and migrates its tables itself.
set -eu

: "${PGHOST:?PGHOST is required}"
: "${PGUSER:?PGUSER is required}"
: "${PGPASSWORD:?PGPASSWORD is required}"
: "${TRIBUTARY_DB_PASSWORD:?TRIBUTARY_DB_PASSWORD is required}"
TRIBUTARY_DB_USER="${TRIBUTARY_DB_USER:-tributary}"
TRIBUTARY_DB_NAME="${TRIBUTARY_DB_NAME:-tributary}"

# psql variables are quoted by psql itself (:'name' a literal, %I/%L by format()),
# so no value is ever spliced into SQL text by the shell.
psql --no-psqlrc --set ON_ERROR_STOP=1 --dbname postgres \
    --set role="$TRIBUTARY_DB_USER" --set password="$TRIBUTARY_DB_PASSWORD" \
    --set db="$TRIBUTARY_DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
echo "authority-db: role $TRIBUTARY_DB_USER and database $TRIBUTARY_DB_NAME ready"
