"""Storage: SQLAlchemy tables, the engine and migrations, and the scan repository."""
