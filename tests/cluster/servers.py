"""Real servers for the cluster tests, each bound to 127.0.0.1 in its own temp dir and stopped by
killing exactly the processes it started (never `ray stop`, which would stop every Ray on the
machine, other engineers' included):

- ``RayHead``: `ray start --head` with the dashboard/job server on a free port (token auth optional)
- ``MotoS3``: moto's standalone S3 server, with a bucket
- ``Postgres``: initdb + pg_ctl as the ``postgres`` user, a database created
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def kill_tree(roots: list[psutil.Process], grace: float = 5.0) -> None:
    """SIGTERM the given processes and their descendants, then SIGKILL what is left."""
    procs: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            procs[root.pid] = root
            procs.update({c.pid: c for c in root.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    for proc in procs.values():
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def processes_mentioning(*needles: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            line = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(n in line for n in needles) and proc.pid != os.getpid():
            found.append(proc)
    return found


@dataclass
class RayHead:
    """A `ray start --head` on 127.0.0.1 with its own temp dir; ``address`` is the job server's URL."""

    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    log: str = ""

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @classmethod
    def start(cls, *, num_cpus: int = 2, token_file: Path | None = None, extra_env: dict[str, str] | None = None) -> RayHead:
        temp_dir = Path(tempfile.mkdtemp(prefix="hr", dir="/tmp"))  # short: Ray's socket paths are length-limited
        gcs_port, dashboard_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k not in ("WANDB_API_KEY",)}
        env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", PYTHONUNBUFFERED="1", **(extra_env or {}))
        if token_file is not None:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
        else:
            env.update(RAY_AUTH_MODE="disabled")
        cmd = [
            str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--include-dashboard=true",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            f"--num-cpus={num_cpus}", "--num-gpus=0", "--disable-usage-stats", f"--temp-dir={temp_dir}",
        ]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        head = cls(temp_dir, gcs_port, dashboard_port, env, run.stdout + run.stderr)
        if run.returncode != 0:
            head.stop()
            raise RuntimeError(f"ray start failed:\n{head.log[-3000:]}")
        wait_for_port(dashboard_port, timeout=120)
        return head

    def stop(self) -> None:
        kill_tree(processes_mentioning(str(self.temp_dir), f":{self.gcs_port}"))
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@dataclass
class MotoS3:
    """moto's standalone S3 server on 127.0.0.1 with one bucket; credentials are moto's dummies."""

    port: int
    bucket: str
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, bucket: str = "harp-runs") -> MotoS3:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        server = cls(port, bucket, proc, env)
        try:
            wait_for_port(port, timeout=60)
            import boto3

            client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
            client.create_bucket(Bucket=bucket)
        except Exception:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        kill_tree([psutil.Process(self.process.pid)] if self.process.poll() is None else [])
        self.process.wait(timeout=10)


@dataclass
class Postgres:
    """A PostgreSQL server run as the ``postgres`` user from a temp dir, on 127.0.0.1 only."""

    data_dir: Path
    port: int
    database: str

    @property
    def url(self) -> str:
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; returns its URL."""
        bindir = self.bin_dir()
        assert bindir is not None
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        out = subprocess.run([*as_pg, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {out.stderr[-2000:]}")
        return self.url_of(name)

    @staticmethod
    def bin_dir() -> Path | None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        return found[-1].parent if found else None

    @classmethod
    def start(cls, database: str = "harp") -> Postgres:
        bindir = cls.bin_dir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        root = Path(tempfile.mkdtemp(prefix="harp-pg-", dir="/tmp"))
        os.chmod(root, 0o755)
        data_dir = root / "data"
        port = free_port()
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        shutil.chown(root, user="postgres") if os.geteuid() == 0 else None
        server = cls(data_dir, port, database)

        def run(*args: str) -> None:
            out = subprocess.run([*as_pg, *args], capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise RuntimeError(f"{args[0]} failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")

        try:
            run(str(bindir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            run(str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
                f"-p {port} -c listen_addresses=127.0.0.1 -k {root}", "start")
            run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
        except Exception:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        bindir = self.bin_dir()
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if bindir is not None and (self.data_dir / "postmaster.pid").exists():
            subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
