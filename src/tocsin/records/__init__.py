"""ITIL record bookkeeping and the priority matrix; pure, no I/O."""
