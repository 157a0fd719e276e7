"""Hosts made of Linux namespaces, for the cluster test: each host is a network namespace with its own
address on a private bridge, and its own disk.

- **Network**: one hub namespace holds a bridge; every host namespace gets a veth pair, ``eth0`` on the
  host side (an address of the test's own subnet, no default route), the other end enslaved to the
  bridge. Nothing is created in the machine's own network namespace and no route leads out of the
  subnet, so no packet of the test can leave the namespaces it made.
- **Disk**: each host has a directory of its own that its processes see as ``/tmp`` (a bind mount in the
  mount namespace ``ip netns exec`` creates for every command), with ``HOME``, ``TMPDIR`` and
  ``DAGSTER_HOME`` inside it. The project and its virtualenv are mounted read-only, like an image's
  layers, so a host can write only to its own disk, and no host can see another's.
- **The client**: the test itself talks to the hosts from the ``client`` namespace, entered by the
  calling thread with ``setns`` (sockets keep the namespace they were made in), and left at teardown.

Everything is named with one unique prefix and removed by :meth:`Network.close`, which kills every
process left in the namespaces (``ip netns pids``), never anything by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
SUBNET = "10.213.0"
PREFIX_LEN = 24


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def netns_available() -> str | None:
    """None when this machine can make network namespaces, else why not."""
    if os.geteuid() != 0:
        return "the cluster test needs root (network namespaces, bind mounts)"
    if shutil.which("ip") is None:
        return "the cluster test needs iproute2 (`ip netns`)"
    probe = f"nbprobe-{uuid.uuid4().hex[:8]}"
    proc = _ip("netns", "add", probe, check=False)
    if proc.returncode != 0:
        return f"`ip netns add` failed here: {proc.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _setns_fd(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns_fd(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _arrow_io_threads_made_outside(scratch: Path) -> Iterator[None]:
    """pyarrow makes its IO threads on first use, each in the network namespace of the thread that asked:
    one made while this thread is in a host would serve the process's later native S3 reads from inside
    that host (another test's moto on 127.0.0.1 refused there). While inside, the pool is one thread,
    made before entering; afterwards the pool grows again from outside."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    capacity = pa.io_thread_count()
    pa.set_io_thread_count(1)
    warm = scratch / "arrow-io-warm"
    warm.mkdir(exist_ok=True)
    pq.write_table(pa.table({"x": [0]}), warm / "x.parquet")
    ds.dataset(warm).to_table()  # the read goes through the IO pool: its one thread is made here
    try:
        yield
    finally:
        pa.set_io_thread_count(capacity)


@dataclass
class Host:
    """One machine: a network namespace, an address, a disk, and the processes started on it."""

    name: str
    netns: str
    address: str
    disk: Path
    readonly: tuple[Path, ...]
    logdir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        """A clean environment for this host: nothing inherited that names a path or an endpoint."""
        keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TZ")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "HOME": "/tmp/home",
                "TMPDIR": "/tmp/tmp",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                "NO_PROXY": "*",
            }
        )
        env.update(extra)
        return env

    def _wrap(self, args: list[str], cwd: str) -> list[str]:
        # a read-only path under /tmp (a CI checkout there) would be hidden by the disk: bind it into the
        # disk at the same place first, then carry it along with a recursive bind of the disk
        mounts = []
        for path in self.readonly:
            if path.is_relative_to("/tmp"):
                inside = shlex.quote(str(self.disk / path.relative_to("/tmp")))
                mounts += [f"mkdir -p {inside}", f"mount --bind -o ro {shlex.quote(str(path))} {inside}"]
        mounts.append(f"mount --rbind {shlex.quote(str(self.disk))} /tmp")
        mounts += [
            f"mount --bind -o ro {shlex.quote(str(p))} {shlex.quote(str(p))}"
            for p in self.readonly
            if not p.is_relative_to("/tmp")
        ]
        dirs = "mkdir -p /tmp/home /tmp/tmp /tmp/work"
        script = " && ".join([*mounts, dirs, f"cd {shlex.quote(cwd)}", 'exec "$@"'])
        return ["ip", "netns", "exec", self.netns, "sh", "-c", script, "sh", *args]

    def run(self, args: list[str], env: dict[str, str], timeout: float = 120, cwd: str = "/tmp/work") -> str:
        proc = subprocess.run(self._wrap(args, cwd), env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: str = "/tmp/work") -> subprocess.Popen:
        log = open(self.logdir / f"{self.name}-{name}.log", "ab")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            self._wrap(args, cwd), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{self.name}/{name} exited with {proc.returncode}: {self.tail(name)}"

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logdir / f"{self.name}-{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def signal_all(self, sig: signal.Signals) -> list[int]:
        """Send ``sig`` to every process in this host's network namespace; the pids signalled."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def kill_all(self, timeout: float = 30) -> int:
        """SIGKILL every process on the host (a host that dies), and wait until none is left."""
        killed = len(self.signal_all(signal.SIGKILL))
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            self.signal_all(signal.SIGKILL)
            time.sleep(0.1)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        self.procs.clear()
        return killed

    def link(self, up: bool) -> None:
        _ip("-n", self.netns, "link", "set", "eth0", "up" if up else "down")

    def files(self) -> list[str]:
        """Every file on this host's disk, relative to its ``/tmp``."""
        return sorted(str(p.relative_to(self.disk)) for p in self.disk.rglob("*") if p.is_file())


class Network:
    """A bridge in a hub namespace and hosts on it; :meth:`close` removes all of it."""

    def __init__(self, root: Path, readonly: tuple[Path, ...]) -> None:
        self.prefix = f"nbc{uuid.uuid4().hex[:6]}"
        self.root = root
        self.readonly = readonly
        self.hub = f"{self.prefix}-hub"
        self.hosts: dict[str, Host] = {}
        self._client_saved: int | None = None
        (root / "logs").mkdir(parents=True, exist_ok=True)
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")

    def add_host(self, name: str, number: int) -> Host:
        netns = f"{self.prefix}-{name}"
        _ip("netns", "add", netns)
        hub_end = f"v{number}"
        _ip("-n", self.hub, "link", "add", hub_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
        address = f"{SUBNET}.{number}"
        _ip("-n", netns, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        disk = self.root / "disks" / name
        disk.mkdir(parents=True)
        disk.chmod(0o1777)  # it is the host's /tmp
        host = Host(name, netns, address, disk, self.readonly, self.root / "logs")
        self.hosts[name] = host
        return host

    @contextlib.contextmanager
    def client(self, host: Host) -> Iterator[None]:
        """Run the calling thread's new sockets in ``host``'s network namespace for the block."""
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            with _arrow_io_threads_made_outside(self.root):
                _setns(f"/var/run/netns/{host.netns}")
                try:
                    yield
                finally:
                    _setns_fd(saved)
        finally:
            os.close(saved)

    def close(self) -> None:
        for host in self.hosts.values():
            host.kill_all()
        for host in self.hosts.values():
            _ip("netns", "del", host.netns, check=False)
        _ip("netns", "del", self.hub, check=False)
