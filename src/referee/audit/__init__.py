"""The audit trail: one record per transfer, correlated by SIP Call-ID.

A record holds what the proxy decided (its JSON-lines decision events), the NOTIFY outcomes of
the implicit subscription (ordered by CSeq, whatever order they arrived in), what the PBX did
(AMI events), the parties, the times and the final result. SQLite in WAL mode by default,
PostgreSQL through a ``postgresql://`` DSN; a committed record survives a SIGKILL of the daemon.
"""

from referee.audit.record import Entry, TransferRecord
from referee.audit.store import AuditError, AuditStore, open_store

__all__ = ["AuditError", "AuditStore", "Entry", "TransferRecord", "open_store"]
