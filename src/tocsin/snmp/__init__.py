"""SNMP: the trap decoder (and, next, the receiver and MIB translation); pure parts here."""
