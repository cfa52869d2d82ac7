"""Output formats for change events (JSON lines in ConfigurationChange vocabulary; OCSF later)."""
