"""What a matched rule does, one module per action kind, listed in registry.py."""
