"""Alembic revisions of the embedded store, one file per migration (see ``authority.schema``)."""
