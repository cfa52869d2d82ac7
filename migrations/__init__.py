"""Alembic migrations for the snapfim schema (``scanner.storage.tables``)."""
