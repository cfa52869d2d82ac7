"""snapfim: agentless file integrity monitoring from disk snapshots (the scanner library).

This package holds no Celery imports and does no work at import time.
"""

__version__ = "0.1.0"
