"""Persistence behind one interface (SQLite now), and the asyncio writer in front of it."""
