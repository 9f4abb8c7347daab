"""Runbooks: remediation steps from config, rendered into plain argv and requests, then run."""
