"""On-call schedules: who gets paged when, kept pure so the engine and API can ask at any time."""
