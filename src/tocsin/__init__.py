"""tocsin: a service-operation daemon for ops hosts."""

__version__ = "0.1.0"
