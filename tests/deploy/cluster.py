"""The production shape of the deployment on one machine: six hosts made of namespaces (see netns.py).

| host     | address     | runs                                                      | needs |
|----------|-------------|-----------------------------------------------------------|-------|
| db       | 10.213.0.2  | PostgreSQL (the instance database)                        | its data dir |
| store    | 10.213.0.3  | moto's S3 server: prompts, images, journal, ledger, reports | - |
| provider | 10.213.0.4  | ``nbpro sandbox --host 0.0.0.0`` with seconds of latency   | its state dir |
| code     | 10.213.0.5  | the Dockerfile's CMD (gRPC code server) and its run workers | keys, URLs, S3, DAGSTER_PG_* |
| control  | 10.213.0.6  | dagster-webserver and dagster-daemon on deploy/dagster.yaml | DAGSTER_PG_* only |
| client   | 10.213.0.9  | the test itself (GraphQL, and read-only checks)            | - |

The code host is started exactly as the image's ``CMD`` (parsed from the Dockerfile); control loads it
through a workspace file with a ``grpc_server`` entry; the DefaultRunLauncher asks that server to launch
each run, so run workers execute on the code host.
"""

from __future__ import annotations

import json
import pwd
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.deploy import fast_daemon
from tests.deploy import postgres as pg_auth
from tests.deploy.dagster_stack import LOCATION, POLL_S, REPO
from tests.deploy.netns import Host, Network

BIN = Path(sys.executable).parent
DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
KEYS = {"RIVYA_API_KEY": "rvya_sk_cluster_test", "ODIROUTER_API_KEY": "odr_cluster_test"}
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "nbpro-cluster-key-id",
    "AWS_SECRET_ACCESS_KEY": "nbpro-cluster-secret-0123456789",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PG = {"user": "nbpro", "password": "nbpro-cluster-test-only", "db": "dagster", "port": 5432}
BUCKET = "nbpro-cluster"
PORTS = {"store": 5000, "provider": 8787, "code": 4000, "control": 3000}
# run monitoring as deploy/dagster.yaml sets it, but the daemon looks every few seconds instead of every
# 30 (the only value the test shortens); the runs the test kills carry a short dagster/max_runtime_seconds
MONITORING = {"poll_interval_seconds": 3}
DEAD_RUN_MAX_RUNTIME_S = 40
# a task spends 1-2 s queued and 3-5 s processing: a cell takes several seconds, like the real APIs
SANDBOX_LATENCY = ("--queued-latency", "uniform:1,2", "--processing-latency", "uniform:3,5")


def dockerfile_cmd() -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile has no exec-form CMD"
    return json.loads(match.group(1))


def instance_yaml() -> str:
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    config["run_monitoring"].update(MONITORING)
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Cluster:
    net: Network
    db: Host
    store: Host
    provider: Host
    code: Host
    control: Host
    client: Host

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.store.address}:{PORTS['store']}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.provider.address}:{PORTS['provider']}"

    @property
    def webserver_url(self) -> str:
        return f"http://{self.control.address}:{PORTS['control']}"

    def pg_env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.db.address,
            "DAGSTER_PG_PORT": str(PG["port"]),
            "DAGSTER_PG_USER": PG["user"],
            "DAGSTER_PG_PASSWORD": PG["password"],
            "DAGSTER_PG_DB": PG["db"],
        }

    def code_env(self) -> dict[str, str]:
        """What the code host (and its run workers) need: keys, provider URLs, the bucket, the instance."""
        return self.code.env(
            {
                **KEYS,
                **S3_CREDENTIALS,
                **self.pg_env(),
                "AWS_ENDPOINT_URL": self.s3_endpoint,
                "DAGSTER_HOME": "/tmp/dagster_home",
                "RIVYA_BASE_URL": self.sandbox_url,
                "ODIROUTER_BASE_URL": self.sandbox_url + "/model",
                "NBPRO_STORAGE_ROOT": f"s3://{BUCKET}/nbpro",
                "NBPRO_PROMPT_SOURCES": f"s3://{BUCKET}/prompts/",
                "NBPRO_POLL_FIRST_DELAY_S": "0.5",
            }
        )

    # -- hosts ---------------------------------------------------------------------------------------
    def start_db(self) -> None:
        """PostgreSQL as the unprivileged ``postgres`` user (initdb refuses root), data on the db disk."""
        entry = pwd.getpwnam("postgres")
        pg = self.db.disk / "pg"
        if not (pg / "data").exists():
            (pg / "sock").mkdir(parents=True)
            (pg / "pw").write_text(PG["password"])
            for path in (pg, pg / "sock", pg / "pw"):
                shutil.chown(path, entry.pw_uid, entry.pw_gid)
            initdb = [str(_pg_bin() / "initdb"), "-D", "/tmp/pg/data", "-U", PG["user"], "--pwfile=/tmp/pg/pw",
                      f"--auth={pg_auth.AUTH}", "--encoding=UTF8", "--no-sync"]  # fmt: skip
            self.db.run(["runuser", "-u", "postgres", "--", *initdb], self.db.env({}))
            with open(pg / "data" / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.db.address.rsplit('.', 1)[0]}.0/24 {pg_auth.AUTH}\n")
        server = [str(_pg_bin() / "postgres"), "-D", "/tmp/pg/data", "-p", str(PG["port"]), "-k", "/tmp/pg/sock",
                  "-c", f"listen_addresses={self.db.address}", "-c", "fsync=off", *pg_auth.SERVER_OPTIONS]  # fmt: skip
        self.db.start("postgres", ["runuser", "-u", "postgres", "--", *server], self.db.env({}))

    def wait_db(self, deadline: float) -> None:
        import psycopg2

        while True:
            self.db.check_alive()
            try:
                psycopg2.connect(**self.pg_kwargs("postgres"), connect_timeout=3).close()
                return
            except psycopg2.OperationalError:
                assert time.monotonic() < deadline, f"PostgreSQL did not start: {self.db.tail('postgres')}"
                time.sleep(0.3)

    def pg_kwargs(self, db: str | None = None) -> dict[str, Any]:
        return {"host": self.db.address, "port": PG["port"], "user": PG["user"], "password": PG["password"],
                "dbname": db or PG["db"]}  # fmt: skip

    def create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(**self.pg_kwargs("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                pg_auth.store_password(cur, PG["user"], PG["password"])
                cur.execute(f'CREATE DATABASE "{PG["db"]}"')
        finally:
            conn.close()

    def start_store(self) -> None:
        self.store.start("moto", [str(BIN / "moto_server"), "-H", "0.0.0.0", "-p", str(PORTS["store"])],
                         self.store.env({}))  # fmt: skip

    def start_provider(self) -> None:
        args = [str(BIN / "nbpro"), "sandbox", "--host", "0.0.0.0", "--port", str(PORTS["provider"]),
                "--state", "/tmp/sandbox", *SANDBOX_LATENCY]  # fmt: skip
        self.provider.start("sandbox", args, self.provider.env({}))

    def start_code(self) -> None:
        """The image's CMD, with the image's DAGSTER_HOME (a copy of the instance file) on the code disk."""
        home = self.code.disk / "dagster_home"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text(instance_yaml())
        cmd = dockerfile_cmd()
        assert cmd[:3] == ["dagster", "code-server", "start"], cmd
        self.code.start("code-server", [str(BIN / "dagster"), *cmd[1:]], self.code_env())

    def wipe_code_disk(self) -> None:
        """A restarted container starts from its image: nothing of the dead one's disk survives."""
        for child in self.code.disk.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def start_control(self) -> None:
        home = self.control.disk / "dagster_home"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text(instance_yaml())
        work = self.control.disk / "work"
        work.mkdir(exist_ok=True)
        workspace = {"load_from": [{"grpc_server": {"host": self.code.address, "port": PORTS["code"],
                                                    "location_name": LOCATION}}]}  # fmt: skip
        (work / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        env = self.control.env({**self.pg_env(), "DAGSTER_HOME": "/tmp/dagster_home"})
        # the stock daemon with a 1 s backfill tick (fast_daemon.py), importable from the read-only checkout
        daemon_env = {**env, "PYTHONPATH": str(REPO)}
        self.control.start("daemon", fast_daemon.daemon_cmd("workspace.yaml"), daemon_env)
        web = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "0.0.0.0", "-p", str(PORTS["control"])]
        self.control.start("webserver", web, env)

    def wait_code(self, deadline: float) -> None:
        """Until control gets SERVING from the code host's gRPC server (``dagster api grpc-health-check``'s
        query, from a script that does not import Dagster: grpc_health.py)."""
        check = [sys.executable, "-m", "tests.deploy.grpc_health", self.code.address, str(PORTS["code"])]
        env = self.control.env({"PYTHONPATH": str(REPO)})
        while True:
            self.code.check_alive()
            try:
                self.control.run(check, env, timeout=30)
                return
            except RuntimeError:
                assert time.monotonic() < deadline, f"code server not healthy: {self.code.tail('code-server')}"
                time.sleep(POLL_S)

    def wait_http(self, url: str, host: Host, deadline: float) -> None:
        while True:
            host.check_alive()
            try:
                httpx.get(url, timeout=3)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{url} never answered"
                time.sleep(0.3)

    # -- read-only views for the checks ----------------------------------------------------------------
    def s3(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def bucket_keys(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            out.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(out)

    def sandbox_ledger(self) -> list[dict[str, Any]]:
        response = httpx.get(self.sandbox_url + "/_sandbox/ledger", timeout=30)
        response.raise_for_status()
        return response.json()["entries"]

    def sandbox_stats(self) -> dict[str, Any]:
        response = httpx.get(self.sandbox_url + "/_sandbox/stats", timeout=30)
        response.raise_for_status()
        return response.json()

    def logs(self) -> str:
        out = []
        for host in (self.code, self.control, self.provider, self.db):
            for name in host.procs:
                out.append(f"--- {host.name}/{name} (tail) ---\n{host.tail(name)}")
        return "\n".join(out)


def _pg_bin() -> Path:
    from tests.deploy.postgres import find_bin_dir

    found = find_bin_dir()
    assert found is not None, "PostgreSQL server binaries not found"
    return found


def build(root: Path) -> Cluster:
    """The six hosts on their bridge; no process started yet."""
    venv = Path(sys.prefix)
    readonly = tuple(dict.fromkeys(p for p in (REPO, venv) if p.exists()))
    readonly = tuple(p for p in readonly if not any(p != q and p.is_relative_to(q) for q in readonly))
    net = Network(root, readonly)
    try:
        names = ("db", "store", "provider", "code", "control")
        hosts = {name: net.add_host(name, i + 2) for i, name in enumerate(names)}
        client = net.add_host("client", 9)
    except BaseException:
        net.close()
        raise
    return Cluster(net=net, client=client, **hosts)
