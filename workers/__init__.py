"""Celery entry points (thin): load ids, call the scanner, persist. See workers.app."""
