"""Reading a Kamailio htable value from Python without reading freed memory.

Works around a Kamailio htable bug (5.6 to 6.1 and master as of 2026-12, ``ht_cell_pkg_copy`` in
``src/modules/htable/ht_api.c``). ``sht_get`` (and ``$sht``) copy the cell into a per-process buffer
that is reused when the next cell fits in it, and in that case the copy's value pointer is not
moved into the buffer: it still points into the cell in shared memory, which app_python3 reads
after the slot's lock is released. A worker that sets a longer value in the meantime frees that
cell (a shorter or equal one is overwritten in place), so the reader gets freed or half-written
bytes: a wrong value, or ``UnicodeDecodeError`` when app_python3 decodes it. In the proxy this
made a worker holding a NOTIFY for its REFER's 202 read garbage and reply 400 instead of relaying
it (1 NOTIFY in about 50,000 in tests/integration/test_proxy_notify_order.py under load).

Read under the slot's lock (``sht_lock``; Kamailio's slot lock is re-entrant in one process, so
``sht_get`` takes it again): no worker can free or rewrite the cell until app_python3 has copied
the value into a Python ``str``. tests/integration/test_htable_reads.py shows both sides on a real
Kamailio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from referee.kemi.ksr import KSR, XVal


def read(k: KSR, table: str, key: str) -> XVal:
    """``sht_get`` of ``key`` while its slot is locked: the value as it was set, never torn."""
    k.htable.sht_lock(table, key)
    try:
        return k.htable.sht_get(table, key)
    finally:
        k.htable.sht_unlock(table, key)
