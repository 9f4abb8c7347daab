"""How a notice is said: one module per channel, each rendering outbox rows and sending them."""
