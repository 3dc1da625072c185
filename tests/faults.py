"""Real faults for tests: a TCP proxy in front of a database server that can be cut."""

from __future__ import annotations

import socket
import threading


class Proxy:
    """Forwards 127.0.0.1:<port> to a server; `cut()` closes every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.open = False
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, a free port), so a
    test can stop and start it without touching the shared server. Runs as the `postgres` user.
    `standby_of`: a streaming replica of that cluster instead (pg_basebackup -R), whose replay
    the test can pause and resume."""

    def __init__(self, standby_of: PostgresServer | None = None, database: str = "alx"):
        import glob
        import shutil
        import subprocess
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found or not shutil.which("runuser"):
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) or runuser are not installed")
        self.bin = found[-1].rsplit("/", 1)[0]
        self.dir = tempfile.mkdtemp(prefix="alx-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run = subprocess.run
        self.database = database
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        if standby_of is not None:
            self._as_postgres(f"{self.bin}/pg_basebackup", "-h", "127.0.0.1", "-p", str(standby_of.port), "-U",
                              "postgres", "-D", f"{self.dir}/data", "-R", "-X", "stream", "-c", "fast", "--no-sync")
            self.start()
            return
        self._as_postgres(f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8", "--locale=C")
        self.start()
        self.psql(f"CREATE DATABASE {database}", database="postgres")

    def psql(self, sql: str, database: str | None = None) -> str:
        """One statement's output (unaligned, tuples only)."""
        done = self._run(["runuser", "-u", "postgres", "--", f"{self.bin}/psql", "-h", "127.0.0.1", "-p",
                          str(self.port), "-U", "postgres", "-d", database or self.database, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True, cwd=self.dir)
        return done.stdout.strip()

    def promote(self) -> None:
        """A standby becomes a primary of its own (a failover)."""
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-w", "promote")

    def pause_replay(self) -> None:
        self.psql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.psql("SELECT pg_wal_replay_resume()")

    def caught_up_with(self, primary: PostgresServer, timeout: float = 30.0) -> None:
        """Wait until this standby has replayed everything the primary has written."""
        import time

        target = primary.psql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while self.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
            if time.monotonic() > deadline:
                raise TimeoutError(f"standby on port {self.port} did not reach {target}")
            time.sleep(0.02)

    def _as_postgres(self, *command: str) -> None:
        self._run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-o", options, "-l",
                          f"{self.dir}/server.log", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-m", mode, "-w", "stop")

    def remove(self) -> None:
        import shutil

        try:
            self.stop("immediate")
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
