"""A PostgreSQL session advisory lock per cell hash (tracking.lock_db), beside the file lock of the record
store: the file lock cannot expire another machine's lock, the database frees a session's locks when its
connection ends, so a worker killed mid-cell (or a dead host, noticed through TCP keepalives) blocks nothing."""
from __future__ import annotations

from ..core.config import BadInput


def _dsn(uri: str) -> str:
    for prefix in ("postgresql+psycopg2://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql://" + uri[len(prefix):]
    if not uri.startswith("postgresql://"):
        raise BadInput(f"tracking.lock_db={uri!r} is not a PostgreSQL URL; use postgresql://USER:PASS@HOST:PORT/DB")
    return uri


def lock_id(cell_hash: str) -> int:
    """The 64 bits of the cell hash as PostgreSQL's signed bigint."""
    n = int(cell_hash, 16)
    return n - (1 << 64) if n >= 1 << 63 else n


class AdvisoryLocks:
    """try_lock/unlock by cell hash; one connection per held lock (closing it releases the lock)."""

    def __init__(self, uri: str):
        self.dsn = _dsn(uri)
        self.held: dict = {}

    def _connect(self):
        try:
            import psycopg2
        except ImportError as e:
            raise BadInput("tracking.lock_db needs psycopg2: pip install -e '.[scale]'") from e
        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=10, keepalives=1, keepalives_idle=10,
                                    keepalives_interval=5, keepalives_count=3, application_name="artifact-cell")
        except psycopg2.OperationalError as e:
            raise BadInput(f"tracking.lock_db: cannot connect ({str(e).strip().splitlines()[0]})") from e
        conn.autocommit = True
        return conn

    def check(self) -> None:
        """Connect once (the preflight): a wrong URL is bad input before any cell runs."""
        self._connect().close()

    def try_lock(self, cell_hash: str) -> bool:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_id(cell_hash),))
            got = cur.fetchone()[0]
        if got:
            self.held[cell_hash] = conn
        else:
            conn.close()
        return bool(got)

    def unlock(self, cell_hash: str) -> None:
        conn = self.held.pop(cell_hash, None)
        if conn is not None:
            conn.close()
