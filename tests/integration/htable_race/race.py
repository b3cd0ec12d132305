"""KEMI script of tests/integration/test_htable_reads.py: two rtimer processes race on one htable key.

The writer flips the key between a short and a long value, as ReferAnswers flips a REFER's state from
"P" to "A <time>" (a longer value makes htable free the cell, a shorter one is written over it). The
reader reads it, first with a plain ``sht_get``, then with :func:`referee.kemi.shared_table.read`,
and writes what it read that was neither value to ``$TESTDIR/reads.json``.
"""

import json
import os
import sys
import time

import KSR

sys.path.insert(0, os.path.join(os.environ["REPO"], "src"))

from referee.kemi import shared_table

TABLE, KEY = "race", "k"
VALUES = ("P", "A 1796167688.957031")
SECONDS = 1.5  # each way of reading
BOUND = 15.0  # every loop stops by itself


def _loop_until(stop):
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline and not stop():
        yield


class Race:
    def __init__(self):
        self.ran = False

    def child_init(self, rank):
        return 0

    def ksr_request_route(self, msg):
        KSR.sl.sl_send_reply(200, "OK")  # the harness's readiness OPTIONS
        return 1

    def ksr_writer(self, msg, name=""):
        if self.ran:
            return 1
        self.ran = True
        flips = 0
        for _ in _loop_until(lambda: KSR.pv.get("$shv(race_done)") == 1):
            KSR.htable.sht_sets(TABLE, KEY, VALUES[flips % 2])
            flips += 1
        KSR.info(f"race: the writer set the key {flips} times\n")
        return 1

    def ksr_reader(self, msg, name=""):
        if self.ran:
            return 1
        self.ran = True
        for _ in _loop_until(self._written):
            pass  # until the writer has begun
        result = {
            "unlocked": self._read(lambda: KSR.htable.sht_get(TABLE, KEY)),
            "locked": self._read(lambda: shared_table.read(KSR, TABLE, KEY)),
        }
        KSR.pv.seti("$shv(race_done)", 1)
        path = os.path.join(os.environ["TESTDIR"], "reads.json")
        with open(path + ".new", "w") as out:
            json.dump(result, out)
        os.rename(path + ".new", path)
        return 1

    def _written(self):
        return shared_table.read(KSR, TABLE, KEY) is not None

    def _read(self, get):
        reads, bad = 0, []
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            try:
                value = get()
            except UnicodeDecodeError as exc:
                value = f"UnicodeDecodeError: {exc.reason}"
            reads += 1
            if value not in VALUES:
                bad.append(repr(value))
        return {"reads": reads, "bad": len(bad), "examples": bad[:5]}


def mod_init():
    return Race()
