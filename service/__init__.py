"""Tempo Serve gateway: HTTP API, request validation, Redis job queue client. Never imports torch."""
