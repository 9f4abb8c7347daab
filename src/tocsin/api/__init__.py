"""The HTTP API: /metrics, /healthz and the incident endpoints."""
