"""Alembic environment: always run on the connection the caller passes in `config.attributes`."""

from __future__ import annotations

from alembic import context

from layerscope.service.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("layerscope migrations run through layerscope.service.store.migrations.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
