"""The audit trail: one record per transfer, its entries typed events (:mod:`referee.events`).

A record holds what the proxy decided and what the REFER was answered, the NOTIFY outcomes of
the implicit subscription (ordered by CSeq, whatever order they arrived in), what the PBX did
(AMI events), the parties, the times and the final result. The correlator
(:mod:`referee.audit.correlate`) joins the proxy's events and the PBX's into a record by SIP
Call-ID and CSeq; ``referee audit ingest`` (:mod:`referee.audit.service`) reads a proxy's event
file with no PBX. SQLite in WAL mode by default, PostgreSQL through a ``postgresql://`` DSN; a
committed record survives a SIGKILL of the writer. docs/audit.md says more.
"""

from referee.audit.record import Entry, TransferRecord
from referee.audit.store import AuditError, AuditStore, open_store

__all__ = ["AuditError", "AuditStore", "Entry", "TransferRecord", "open_store"]
