"""The input edge: where events come from (log files now; SNMP and MQTT later)."""
