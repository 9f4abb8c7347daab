"""Why an SNMP packet was not processed: the `reason` label of tocsin_snmp_packets_dropped_total."""

from __future__ import annotations

# v1/v2c access (snmp/access.py)
BAD_COMMUNITY = "bad community"
NETWORK_NOT_ALLOWED = "community not allowed from this network"
# SNMPv3 USM (sources/snmpv3.py)
NO_V3_USERS = "no SNMPv3 users configured"
UNKNOWN_USER = "unknown user"
UNKNOWN_ENGINE_ID = "unknown engine id"
AUTHENTICATION_FAILURE = "authentication failure"
DECRYPTION_FAILURE = "decryption failure"
NOT_IN_TIME_WINDOW = "not in time window"
LEVEL_TOO_LOW = "security level too low"
UNSUPPORTED_LEVEL = "unsupported security level"  # informs: level unlike the user's protocols
NOT_ANSWERED = "inform response failed"
# any version
MALFORMED = "malformed"
UNSUPPORTED_VERSION = "unsupported version"
NOT_A_NOTIFICATION = "not a trap or inform"
DUPLICATE_INFORM = "duplicate inform"  # a retransmission: answered again if we had, not processed
# the socket (sources/snmp.py, trapd.py)
BUFFER_FULL = "receive buffer full"  # the kernel dropped packets the daemon did not read
READ_ERROR = "receive error"  # recvfrom failed (the error is the kernel's, the packet is gone)
SHUTDOWN = "shutdown"  # read from the socket but not processed before the daemon stopped
