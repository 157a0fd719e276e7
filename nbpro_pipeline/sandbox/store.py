"""The sandbox's durable state: wallets, billing ledger, tasks, idempotency keys and uploaded files.

SQLite in ``<state_dir>/sandbox.db`` (WAL, synchronous=NORMAL: a crash of the machine may lose the
last instants, a crash of the process loses nothing). Hot state is mirrored in memory and every
change is written through in the same call, so reads never touch the disk and a server restarted on
the same directory sees the same wallets, ledger and tasks.

Money is integer minor units: credits for Rivya, micro-dollars for OdiRouter, so sums are exact and
a ledger reconciles to the last micro-dollar. Conversion to wire numbers happens at the edges.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.sandbox.tasks import SandboxTask

MICROS_PER_USD = 1_000_000

UNIT: dict[str, str] = {Provider.RIVYA.value: "credits", Provider.ODIROUTER.value: "usd"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wallets (
    provider TEXT PRIMARY KEY, balance INTEGER NOT NULL, initial INTEGER NOT NULL, topped_up INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, provider TEXT NOT NULL, task_id TEXT NOT NULL,
    kind TEXT NOT NULL, amount INTEGER NOT NULL, unit TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, provider TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, body_digest TEXT NOT NULL, task_id TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, data TEXT NOT NULL);
"""


def to_minor(provider: str, amount: float) -> int:
    """Wire amount (credits, or USD as a float) to integer minor units."""
    return int(amount) if provider == Provider.RIVYA.value else round(amount * MICROS_PER_USD)


def to_wire(provider: str, minor: int) -> int | float:
    return minor if provider == Provider.RIVYA.value else minor / MICROS_PER_USD


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    provider: str
    task_id: str
    kind: str  # reserve | settle | refund (Rivya, credits); charge (OdiRouter, usd)
    amount: int  # signed net charge in minor units: a refund is negative
    at: float

    @property
    def unit(self) -> str:
        return UNIT[self.provider]

    def to_wire(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "task_id": self.task_id,
            "kind": self.kind,
            "amount": to_wire(self.provider, self.amount),
            "unit": self.unit,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    body_digest: str
    task_id: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    name: str
    kind: str
    mime_type: str
    size: int
    width: int
    height: int
    created_at: float
    client_request_id: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Billing:
    """One billing event to apply atomically with a task write: a ledger entry and its wallet effect."""

    entry: LedgerEntry
    wallet_delta: int  # added to the wallet: -charge, +refund


class SandboxStore:
    """All durable state; every method writes through before returning."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.files_dir = self.state_dir / "files"
        self.tasks: dict[str, SandboxTask] = {}
        self.files: dict[str, StoredFile] = {}
        self._wallets: dict[str, int] = {}
        self._idempotency: dict[str, IdempotencyRecord] = {}
        self._db: sqlite3.Connection | None = None
        self.secret: bytes = b""

    # --- lifecycle -------------------------------------------------------------------------------

    def open(self, initial_wallets: dict[str, int]) -> None:
        """Create or load the state directory; ``initial_wallets`` only fill wallets that do not exist."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.secret = self._load_secret()
        # check_same_thread=False: the server opens the store in its lifespan and then uses it only
        # from its event loop thread, which need not be the thread that constructed this object.
        db = sqlite3.connect(self.state_dir / "sandbox.db", isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db
        for provider, amount in initial_wallets.items():
            db.execute(
                "INSERT OR IGNORE INTO wallets (provider, balance, initial, topped_up) VALUES (?, ?, ?, 0)",
                (provider, amount, amount),
            )
        self._wallets = dict(db.execute("SELECT provider, balance FROM wallets").fetchall())
        self.tasks = {
            task_id: SandboxTask.from_record(json.loads(data))
            for task_id, data in db.execute("SELECT id, data FROM tasks ORDER BY rowid")
        }
        self._idempotency = {
            row[0]: IdempotencyRecord(*row)
            for row in db.execute("SELECT key, body_digest, task_id, created_at FROM idempotency")
        }
        self.files = {
            file_id: StoredFile(**json.loads(data)) for file_id, data in db.execute("SELECT id, data FROM files")
        }

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _load_secret(self) -> bytes:
        path = self.state_dir / "secret.key"
        if not path.exists():
            path.write_text(secrets.token_hex(32), encoding="ascii")
            path.chmod(0o600)
        return bytes.fromhex(path.read_text(encoding="ascii").strip())

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the sandbox store is not open")
        return self._db

    # --- wallets ---------------------------------------------------------------------------------

    def balance(self, provider: str) -> int:
        return self._wallets[provider]

    def topup(self, provider: str, amount: int) -> int:
        with _transaction(self.db) as db:
            db.execute(
                "UPDATE wallets SET balance = balance + ?, topped_up = topped_up + ? WHERE provider = ?",
                (amount, amount, provider),
            )
        self._wallets[provider] += amount
        return self._wallets[provider]

    def wallets(self) -> dict[str, dict[str, int]]:
        rows = self.db.execute("SELECT provider, balance, initial, topped_up FROM wallets").fetchall()
        return {p: {"balance": b, "initial": i, "topped_up": t} for p, b, i, t in rows}

    # --- tasks and billing -----------------------------------------------------------------------

    def add_task(self, task: SandboxTask, billing: Billing | None = None) -> None:
        with _transaction(self.db) as db:
            db.execute(
                "INSERT INTO tasks (id, provider, data) VALUES (?, ?, ?)",
                (task.id, task.provider, json.dumps(task.to_record())),
            )
            self._write_billing(db, billing)
        self._mirror_billing(billing)
        self.tasks[task.id] = task

    def save_tasks(self, changes: list[tuple[SandboxTask, Billing | None]]) -> None:
        """Persist changed tasks and their billing in one transaction (settlement runs in batches)."""
        if not changes:
            return
        with _transaction(self.db) as db:
            db.executemany(
                "UPDATE tasks SET data = ? WHERE id = ?",
                [(json.dumps(task.to_record()), task.id) for task, _ in changes],
            )
            for _, billing in changes:
                self._write_billing(db, billing)
        for _, billing in changes:
            self._mirror_billing(billing)

    def _mirror_billing(self, billing: Billing | None) -> None:
        """Apply a committed billing's wallet effect to the in-memory wallet (only after COMMIT)."""
        if billing is not None and billing.wallet_delta:
            self._wallets[billing.entry.provider] += billing.wallet_delta

    def _write_billing(self, db: sqlite3.Connection, billing: Billing | None) -> None:
        if billing is None:
            return
        e = billing.entry
        db.execute(
            "INSERT INTO ledger (provider, task_id, kind, amount, unit, at) VALUES (?, ?, ?, ?, ?, ?)",
            (e.provider, e.task_id, e.kind, e.amount, e.unit, e.at),
        )
        if billing.wallet_delta:
            db.execute(
                "UPDATE wallets SET balance = balance + ? WHERE provider = ?", (billing.wallet_delta, e.provider)
            )

    def ledger(self, provider: str | None = None, task_id: str | None = None) -> list[LedgerEntry]:
        sql = "SELECT provider, task_id, kind, amount, at FROM ledger"
        clauses, args = [], []
        if provider:
            clauses.append("provider = ?")
            args.append(provider)
        if task_id:
            clauses.append("task_id = ?")
            args.append(task_id)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [LedgerEntry(*row) for row in self.db.execute(sql + " ORDER BY seq", args)]

    def billed_by_task(self, provider: str) -> dict[str, int]:
        """Net amount billed per task id (minor units): what the provider's ledger says each task cost."""
        sql = "SELECT task_id, SUM(amount) FROM ledger WHERE provider = ? GROUP BY task_id"
        return dict(self.db.execute(sql, (provider,)).fetchall())

    # --- idempotency -----------------------------------------------------------------------------

    def idempotency(self, key: str) -> IdempotencyRecord | None:
        return self._idempotency.get(key)

    def add_task_with_key(self, task: SandboxTask, billing: Billing | None, record: IdempotencyRecord) -> None:
        """Create a task and remember its Idempotency-Key atomically: a crash cannot split them."""
        with _transaction(self.db) as db:
            db.execute(
                "INSERT INTO tasks (id, provider, data) VALUES (?, ?, ?)",
                (task.id, task.provider, json.dumps(task.to_record())),
            )
            db.execute(
                "INSERT OR REPLACE INTO idempotency (key, body_digest, task_id, created_at) VALUES (?, ?, ?, ?)",
                (record.key, record.body_digest, record.task_id, record.created_at),
            )
            self._write_billing(db, billing)
        self._mirror_billing(billing)
        self.tasks[task.id] = task
        self._idempotency[record.key] = record

    # --- files -----------------------------------------------------------------------------------

    def add_file(self, meta: StoredFile, data: bytes) -> None:
        path = self.file_path(meta.id)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        with _transaction(self.db) as db:
            db.execute("INSERT INTO files (id, data) VALUES (?, ?)", (meta.id, json.dumps(meta.to_record())))
        self.files[meta.id] = meta

    def file_path(self, file_id: str) -> Path:
        # file ids are generated here ("file_" + hex), never taken from a request unchecked
        return self.files_dir / file_id

    # --- reset -----------------------------------------------------------------------------------

    def reset(self, initial_wallets: dict[str, int]) -> None:
        with _transaction(self.db) as db:
            for table in ("ledger", "tasks", "idempotency", "files", "wallets"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            for provider, amount in initial_wallets.items():
                db.execute(
                    "INSERT INTO wallets (provider, balance, initial, topped_up) VALUES (?, ?, ?, 0)",
                    (provider, amount, amount),
                )
        self._wallets = dict(initial_wallets)
        self.tasks.clear()
        self._idempotency.clear()
        self.files.clear()
        shutil.rmtree(self.files_dir, ignore_errors=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)


class _transaction:
    """BEGIN ... COMMIT, or ROLLBACK on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
