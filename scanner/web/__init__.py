"""The read-only dashboard and HTTP API (``snapfim serve``): server-rendered pages and a JSON
API under ``/api/v1/`` over the same database the scanner writes."""
