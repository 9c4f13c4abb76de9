"""One MLflow tracking server for a sweep spread over GPUs and machines: PostgreSQL (Debian's packages) as its
backend store, artifacts served by the server (--serve-artifacts), usage telemetry off, bound to 127.0.0.1
unless told otherwise. The same database holds the per-cell advisory locks (tracking.lock_db).

    make tracking-server                        # or: python -m artifact.tracking_server [--host H] [--port P]

It runs in the foreground until Ctrl-C, which stops the server and the database. Its state is under
.tracking/ (the PostgreSQL cluster and the artifacts), kept between starts."""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DB_USER, DB_NAME = "artifact", "mlflow"


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if found is None:
        raise SystemExit(f"error: PostgreSQL's {name} is not installed (Debian/Ubuntu: apt-get install postgresql)")
    return found


def _as_db_owner(cmd: list[str], owner: str | None) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user the package creates."""
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A PostgreSQL cluster in `folder`, listening on host:port with trust authentication for DB_USER."""

    def __init__(self, folder: Path, host: str = "127.0.0.1", port: int = 5432):
        self.folder, self.host, self.port = Path(folder).resolve(), host, port
        self.owner = "postgres" if os.geteuid() == 0 else None

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://{DB_USER}@{self.host}:{self.port}/{DB_NAME}"

    @property
    def lock_uri(self) -> str:
        return f"postgresql://{DB_USER}@{self.host}:{self.port}/{DB_NAME}"

    def start(self) -> "Postgres":
        data = self.folder / "pgdata"
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.owner:
            shutil.chown(self.folder, self.owner)
            reach = subprocess.run(["runuser", "-u", self.owner, "--", "test", "-w", str(self.folder)])
            if reach.returncode != 0:
                raise SystemExit(f"error: PostgreSQL runs as user {self.owner} (not as root), which cannot reach "
                                 f"{self.folder}; give a folder it can reach, e.g. --dir /var/tmp/artifact-tracking")
        new = not (data / "PG_VERSION").exists()
        if new:
            subprocess.run(_as_db_owner([pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", DB_USER,
                                         "--no-instructions"], self.owner), check=True, capture_output=True)
        subprocess.run(_as_db_owner([pg_bin("pg_ctl"), "-D", str(data), "-w", "-l", str(self.folder / "postgres.log"),
                                     "-o", f"-h {self.host} -p {self.port} -k {self.folder}", "start"], self.owner),
                       check=True, capture_output=True)
        if new:
            subprocess.run([pg_bin("createdb"), "-h", self.host, "-p", str(self.port), "-U", DB_USER, DB_NAME],
                           check=True, capture_output=True)
        return self

    def stop(self) -> None:
        subprocess.run(_as_db_owner([pg_bin("pg_ctl"), "-D", str(self.folder / "pgdata"), "-m", "fast", "-w",
                                     "stop"], self.owner), capture_output=True)


def start_mlflow(backend_uri: str, artifacts: Path, host: str, port: int, log: Path) -> subprocess.Popen:
    """`mlflow server` on the backend, serving artifacts from `artifacts`; returns once it answers /health."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
           "--artifacts-destination", str(Path(artifacts).resolve()), "--host", host, "--port", str(port),
           "--workers", "2"]
    if host not in ("127.0.0.1", "localhost"):
        cmd += ["--allowed-hosts", "*"]
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: mlflow server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health" if host == "0.0.0.0"
                                        else f"http://{host}:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_mlflow(proc)
    raise SystemExit(f"error: mlflow server did not answer on {host}:{port} within 120 s; see {log}")


def stop_mlflow(proc: subprocess.Popen) -> None:
    """Stop the server and its workers (they share its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artifact.tracking_server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="where the server listens (0.0.0.0 for other machines)")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--db-port", type=int, default=5433, help="PostgreSQL (5433: beside a packaged one on 5432)")
    ap.add_argument("--dir", default=".tracking", help="PostgreSQL cluster and artifacts (kept between starts)")
    args = ap.parse_args(argv)
    folder = Path(args.dir).resolve()
    if os.geteuid() == 0 and args.dir == ".tracking":  # root's home is closed to the postgres user
        folder = Path("/var/tmp/edge-llm-artifact-tracking")
    db_host = "127.0.0.1" if args.host in ("127.0.0.1", "localhost") else "0.0.0.0"
    pg = Postgres(folder / "postgres", db_host, args.db_port).start()
    try:
        proc = start_mlflow(pg.uri, folder / "artifacts", args.host, args.port, folder / "mlflow.log")
    except BaseException:
        pg.stop()
        raise
    name = socket.gethostname() if args.host == "0.0.0.0" else args.host
    print(f"MLflow on http://{name}:{args.port} (backend PostgreSQL {db_host}:{args.db_port}, artifacts served from "
          f"{folder / 'artifacts'}; telemetry off). Point the workers at it:\n"
          f"  export MLFLOW_TRACKING_URI=http://{name}:{args.port}\n"
          f"  export ARTIFACT_LOCK_DB=postgresql://{DB_USER}@{name}:{args.db_port}/{DB_NAME}\n"
          f"  python -m artifact.run -m hydra/launcher=ray ...\n"
          f"Ctrl-C stops the server and the database.", flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_mlflow(proc)
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
