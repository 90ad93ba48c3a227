"""One run per PostgreSQL job: the advisory lock, the lease that proves its holder alive, and taking over a dead one.

The lock is a session advisory lock on the job's key, held on a *dedicated* connection
(never pooled) that also carries every write. If that session ends, the lock and the
writes go together: a run can never write intents it no longer owns.

A machine that dies must not hold the lock for long. Two things see to it:

- TCP keepalives on that connection, on *both* ends: libpq's (``keepalives_idle`` and
  friends) tell the client that the server went away; the server's ``tcp_keepalives_*``,
  set for the session, let the server drop a session whose machine vanished without
  closing its socket (30 s idle, 6 probes 10 s apart: about 90 s). The URL's
  ``keepalives_idle``/``keepalives_interval``/``keepalives_count`` change both.
- A lease with a heartbeat: the holder renews ``leases.heartbeat_at`` (server time) every
  quarter ``lease`` (default 60 s, ``?lease=`` in the URL) on the lock's own connection. A
  run that finds the lock taken and the lease a whole ``lease`` old ends the holder's
  session (``pg_terminate_backend``; the same database role may) and takes the job. This
  also covers what keepalives cannot see, a frozen process or paused VM whose kernel still
  answers probes, and it is what the tests can exercise here: this machine's kernel has no
  packet filter to make a peer vanish, and a killed process's kernel closes its sockets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import psycopg
from psycopg.pq import TransactionStatus

from ...errors import CheckpointLocked
from ...postgres import PgLocation, where
from .tables import Connection, tables_exist

__all__ = ["Heartbeat", "is_locked", "let_go", "lock_job", "write_lease"]


def _boottime() -> float:
    """Seconds on a clock that keeps counting while the machine is suspended (monotonic where that is missing)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def _try_lock(conn: Connection, loc: PgLocation) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (loc.lock_id,)).fetchone()
    return bool(row and row[0])


# A holder killed a moment ago holds the lock until the server sees its socket close and ends its session. A
# run started as quickly (a supervisor restarting a killed run) would call it running: it asks again for this long.
RELEASE_GRACE = 1.0


def lock_job(conn: Connection, loc: PgLocation) -> None:
    """Take the job's lock on ``conn``, or a dead holder's; else ``CheckpointLocked`` (exit 75) within RELEASE_GRACE."""
    asked_until = time.monotonic() + RELEASE_GRACE
    while not _try_lock(conn, loc):
        holder = _take_over(conn, loc)
        if holder is None:
            return
        if time.monotonic() >= asked_until:
            raise CheckpointLocked(
                f"{loc.describe()}: another batch-engage process is running this job ({holder}); nothing was sent"
            )
        time.sleep(0.05)


def _take_over(conn: Connection, loc: PgLocation) -> str | None:
    """Take the lock from a holder whose heartbeat stopped for a whole lease; else say who holds it.

    Only the backend that both holds the lock and owns the lease row is ended, so a run
    that has just taken the lock (and not yet written its lease) is never touched.
    """
    if not tables_exist(conn, loc):
        return "a run that is starting"
    row = conn.execute(
        loc.sql(
            "SELECT l.backend_pid, l.holder, EXTRACT(EPOCH FROM now() - l.heartbeat_at)::float8, "
            "EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.backend_pid "
            "AND k.classid::bigint = %s AND k.objid::bigint = %s AND k.objsubid = 1) "
            "FROM {s}.leases l WHERE l.job = %s"
        ),
        ((loc.lock_id >> 32) & 0xFFFFFFFF, loc.lock_id & 0xFFFFFFFF, loc.key),
    ).fetchone()
    if row is None:
        return "a run that is starting"
    pid, holder, age, holds = int(row[0]), str(row[1]), float(row[2]), bool(row[3])
    if not holds or age < loc.lease:
        return f"{holder}, heartbeat {age:.0f} s ago"
    # The holder's machine stopped answering (frozen, or gone without closing its socket):
    # end its session, which releases the lock and fails any write it might still attempt.
    try:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    except psycopg.errors.InsufficientPrivilege:
        return f"{holder}, silent for {age:.0f} s, under another database role: run every machine as one role"
    for _ in range(50):
        if _try_lock(conn, loc):
            return None
        conn.execute("SELECT pg_sleep(0.1)")
    return f"{holder}, heartbeat {age:.0f} s ago (it could not be ended)"


def write_lease(conn: Connection, loc: PgLocation) -> None:
    """Record this session (host, pid, backend) as the job's holder, with a fresh heartbeat."""
    conn.execute(
        loc.sql(
            "INSERT INTO {s}.leases VALUES (%s, pg_backend_pid(), %s, now()) ON CONFLICT (job) DO UPDATE "
            "SET backend_pid = excluded.backend_pid, holder = excluded.holder, heartbeat_at = now()"
        ),
        (loc.key, f"{socket.gethostname()} pid {os.getpid()}"),
    )


def let_go(conn: Connection, loc: PgLocation) -> None:
    """Release the job's lock when the server has just answered, then close the connection.

    The server ends a closed session's backend, and with it the lock, a moment after the client leaves: a
    command started at once (``--restart --yes`` after a refused ``--restart``) could find the job still held.
    A session whose last query did not come back (a frozen server, a stop mid-query) is only closed: asking
    it anything could hang.
    """
    idle = conn.info.transaction_status in (TransactionStatus.IDLE, TransactionStatus.INTRANS)
    if idle:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", (loc.lock_id,))
    conn.close()


def is_locked(location: str | PgLocation) -> bool:
    """Whether a run holds this job now: try its lock from another session (and let go at once)."""
    loc = where(location)
    with loc.connect() as conn:
        if _try_lock(conn, loc):
            conn.execute("SELECT pg_advisory_unlock(%s)", (loc.lock_id,))
            return False
        return True


class Heartbeat:
    """Renews the lease every quarter lease on the lock's own connection (so a beat proves the lock), in a thread."""

    def __init__(self, conn: Connection, conn_lock: threading.Lock, loc: PgLocation) -> None:
        self._conn = conn
        self._conn_lock = conn_lock
        self._loc = loc
        self._stop = threading.Event()
        self._last_beat = _boottime()
        self._thread = threading.Thread(target=self._beat, name="checkpoint-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        sql = self._loc.sql(
            "UPDATE {s}.leases SET heartbeat_at = now() WHERE job = %s AND backend_pid = pg_backend_pid()"
        )
        while not self._stop.wait(self._loc.lease / 4):
            try:
                with self._conn_lock:
                    self._conn.execute(sql, (self._loc.key,))
            except psycopg.Error:
                return  # the session is gone: the next write fails and stops the run
            self._last_beat = _boottime()

    def fresh(self) -> bool:
        """Whether the last beat is under half a lease old.

        A machine frozen (a paused VM, SIGSTOP) for longer may have been taken over by another;
        when it wakes, its queued requests must not leave before a beat proves the lock again.
        """
        return _boottime() - self._last_beat < self._loc.lease / 2

    def stop(self) -> None:
        """Stop beating (and wait for the thread)."""
        self._stop.set()
        self._thread.join()
