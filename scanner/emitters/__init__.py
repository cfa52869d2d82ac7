"""Records (ConfigurationChange-style, OCSF, alerts), sinks (JSON lines, syslog, webhook),
their settings, and the delivery of the outbox."""
