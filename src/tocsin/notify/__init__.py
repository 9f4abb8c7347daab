"""Notifications: who hears about incidents (routing, escalation) and how (channels)."""
