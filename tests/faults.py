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
    test can stop and start it without touching the shared server. Runs as the `postgres` user."""

    def __init__(self):
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
        self._as_postgres(f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8", "--locale=C")
        self.start()
        self._as_postgres(f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
                          "-c", "CREATE DATABASE alx")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/alx"

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
