"""`tocsin test`: rule unit tests that run the daemon's own pipeline on a virtual clock."""
