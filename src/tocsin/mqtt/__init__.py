"""MQTT without I/O: config, topic filters and message-to-event mapping, for source and sink."""
