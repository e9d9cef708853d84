"""The persistent metadata cache: one sqlite3 file in the cache dir.

What is kept, and for how long:

- **Tag lists** with their fetch time. A pass asks for the list again unless it is younger than the client's
  ``tags_max_age`` (0 by default: every pass sees new tags), so the stored list mostly serves as the set of
  tags whose digests we still track.
- **Per digest** (and image): build time and platforms. A digest names immutable content, so these are kept
  for good; they are what makes build-time ordering cheap after the first pass and after a restart.
- **Tag -> digest**, with a revalidation deadline. Tags can move, but checking every tag on every pass would
  cost one request per tag and defeat the cache. The rule: a mapping is trusted until ``verified_at + ttl``
  (the client's ``tag_ttl``, one hour by default, stretched by a random 0-25 % per entry so that revalidations
  of one repository spread over several passes); after that one ``HEAD`` re-checks it, and only a digest we
  have not seen costs a manifest and config read. A tag that vanishes from the tag list is forgotten. A
  policy that writes digests (``digest``, ``pin_digest``) always re-checks its chosen tag with a ``HEAD``.
- **Decisions** of policies that read tag names only (no build time, platforms or age): the tag chosen for an
  (image, policy, current tag) and a hash of the tag list it was chosen from. A pass whose tag list is
  unchanged reuses the decision instead of ranking every tag again; the policy part of the key carries a
  fingerprint of the policy code, so a changed implementation decides afresh.

Inside ``batch()`` (a pass) the tag lists and decisions are held back and written together, one statement per
kind, at the next commit (every ``batch_seconds``, and when the batch ends); a read sees them first.

The schema carries a version (``PRAGMA user_version``); a cache of another version or a corrupt file is
replaced, never trusted, since everything in it can be fetched again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["CACHE_FILE", "DigestMeta", "MetadataCache", "TagDigest"]

log = logging.getLogger(__name__)

CACHE_FILE = "registry-metadata.sqlite3"
_BATCH_SECONDS = 0.5
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tag_lists (
    image TEXT PRIMARY KEY,
    fetched_at REAL NOT NULL,
    tags TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tag_digests (
    image TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    verified_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (image, tag)
);
CREATE TABLE IF NOT EXISTS decisions (
    image TEXT NOT NULL,
    policy TEXT NOT NULL,
    current TEXT NOT NULL,
    tags_hash TEXT NOT NULL,
    chosen TEXT,
    PRIMARY KEY (image, policy, current)
);
CREATE TABLE IF NOT EXISTS digests (
    image TEXT NOT NULL,
    digest TEXT NOT NULL,
    created TEXT,
    platforms TEXT,
    source TEXT NOT NULL,
    PRIMARY KEY (image, digest)
);
"""


# upserts, not INSERT OR REPLACE: the row is updated where it is instead of deleted and inserted anew (with
# its index entry), which costs sqlite a third less for the tag list that every pass writes again
_PUT_TAGS = (
    "INSERT INTO tag_lists (image, fetched_at, tags) VALUES (?, ?, ?) "
    "ON CONFLICT (image) DO UPDATE SET fetched_at = excluded.fetched_at, tags = excluded.tags"
)
# the row of _PUT_TAGS: (image, fetched_at, tags)
_FORGET_GONE_TAGS = (
    "DELETE FROM tag_digests WHERE image = ?1 AND tag NOT IN (SELECT value FROM json_each(?3))"
)
_PUT_DECISION = (
    "INSERT INTO decisions (image, policy, current, tags_hash, chosen) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (image, policy, current) DO UPDATE "
    "SET tags_hash = excluded.tags_hash, chosen = excluded.chosen"
)


# what json.dumps writes as it is: printable ASCII but '"' (counted apart: the separators hold some) and '\\'
_JSON_AS_IS = bytes(range(0x20, 0x7F)).replace(b"\\", b"")


def _encode_tags(tags: list[str]) -> str:
    """``json.dumps(tags)``, the same text, without the encoder's work per string where none is needed: a tag
    list is written on every pass, and the tag grammar needs no escapes."""
    joined = '", "'.join(tags)
    if (
        tags and joined.isascii() and not joined.encode().translate(None, _JSON_AS_IS)
        and joined.count('"') == 2 * len(tags) - 2  # the separators' own
    ):
        return f'["{joined}"]'
    return json.dumps(tags)


@dataclass(frozen=True, slots=True)
class DigestMeta:
    """Immutable facts about one manifest digest of one image."""

    created: datetime | None
    platforms: frozenset[str] | None
    source: str = "registry"  # "registry" (config blob / annotation) or "hub" (Docker Hub push time)


@dataclass(frozen=True, slots=True)
class TagDigest:
    digest: str
    verified_at: float
    expires_at: float


class MetadataCache:
    """sqlite3-backed cache; ``MetadataCache(None)`` keeps everything in memory (one process, one run)."""

    def __init__(self, path: str | Path | None, *, batch_seconds: float = _BATCH_SECONDS) -> None:
        self.path = Path(path) if path is not None else None
        self._db = self._connect()
        self._batch_seconds = batch_seconds
        self._batch_depth = 0
        self._last_commit = time.monotonic()
        # writes of tag lists and decisions held back inside batch(), written together (executemany) at the
        # next commit; the reads that depend on them see them first
        # each value is the row its statement binds, so that the commit hands them to sqlite as they are
        self._pending_tags: dict[str, tuple[str, float, str]] = {}
        self._pending_decisions: dict[tuple[str, str, str], tuple[str, str, str, str, str | None]] = {}
        # decisions read ahead for a pass (``read_decisions``): the stored rows of those images, so that a
        # warm pass asks sqlite once instead of once per image; dropped when the outermost batch ends
        self._read_ahead: dict[tuple[str, str, str], tuple[str, str | None]] = {}
        self._read_ahead_images: set[str] = set()
        self._closed = False

    @classmethod
    def in_dir(cls, cache_dir: str | Path) -> MetadataCache:
        """Open (or create) the cache file in ``cache_dir``; fall back to memory if the dir is unusable."""
        directory = Path(cache_dir).expanduser()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return cls(directory / CACHE_FILE)
        except (OSError, sqlite3.Error) as exc:
            log.warning("registry metadata cache in %s is unusable (%s); using memory", directory, exc)
            return cls(None)

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            return self._prepare(sqlite3.connect(":memory:"))
        try:
            return self._prepare(sqlite3.connect(self.path, timeout=10.0))
        except sqlite3.DatabaseError as exc:
            log.warning("registry metadata cache %s is damaged (%s); starting a new one", self.path, exc)
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return self._prepare(sqlite3.connect(self.path, timeout=10.0))

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> sqlite3.Connection:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != _SCHEMA_VERSION:
                for table in ("tag_lists", "tag_digests", "digests", "decisions"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
            # synchronous first: a new file's switch to WAL (a rollback-journal transaction) then costs one
            # fdatasync less (7 instead of 8 for a cold `plan`); the cache can always be fetched again
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA journal_mode=WAL")  # the daemon and a `check` may share the file
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            db.commit()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        if self._closed:
            return
        if self._db.in_transaction or self._pending_tags or self._pending_decisions:
            self._commit()
        self._closed = True
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes of a pass into few transactions (a commit per image costs more than its request);
        a commit still happens every ``batch_seconds`` so that another process never waits long to write."""
        if self._batch_depth == 0:
            self._last_commit = time.monotonic()
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self._read_ahead, self._read_ahead_images = {}, set()
                self._commit()

    def _commit(self) -> None:
        if self._closed:  # closed inside a batch: close() wrote everything
            return
        try:
            self._write_pending()
            self._db.commit()
        except sqlite3.OperationalError as exc:
            self._db.rollback()
            log.warning("registry metadata cache %s not updated: %s", self.path or "(memory)", exc)
        self._last_commit = time.monotonic()

    def _write_pending(self) -> None:
        """The held-back writes, a statement per kind for all of them (raises what sqlite raises)."""
        tags, self._pending_tags = self._pending_tags, {}
        decisions, self._pending_decisions = self._pending_decisions, {}
        if tags:
            self._db.executemany(_PUT_TAGS, tags.values())
            self._db.executemany(_FORGET_GONE_TAGS, tags.values())
        if decisions:
            self._db.executemany(_PUT_DECISION, decisions.values())

    def _flush_tags_of(self, image: str) -> None:
        """Write a held-back tag list before a statement that reads or writes the image's tag digests."""
        if image in self._pending_tags:
            with self._writing():
                self._write_pending()

    def _held(self) -> None:
        """After holding a write back: commit when the batch has run for ``batch_seconds``."""
        if time.monotonic() - self._last_commit >= self._batch_seconds:
            self._commit()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One transaction (or part of a batch); when it fails (disk full, read-only file) the cache misses an
        entry, the pass goes on: everything here can be fetched again."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            self._db.rollback()
            log.warning("registry metadata cache %s not updated: %s", self.path or "(memory)", exc)
            return
        if self._batch_depth == 0 or time.monotonic() - self._last_commit >= self._batch_seconds:
            self._commit()

    # -- tag lists ------------------------------------------------------------------------------------------

    def tags(self, image: str) -> tuple[list[str], float] | None:
        pending = self._pending_tags.get(image)
        if pending is not None:
            row: tuple[str, float] | None = (pending[2], pending[1])
        else:
            query = "SELECT tags, fetched_at FROM tag_lists WHERE image = ?"
            row = self._db.execute(query, (image,)).fetchone()
        if row is None:
            return None
        try:
            tags = json.loads(row[0])
        except ValueError:
            return None
        return ([t for t in tags if isinstance(t, str)], float(row[1])) if isinstance(tags, list) else None

    def put_tags(self, image: str, tags: Iterable[str], fetched_at: float) -> None:
        """Store the list and forget the digests of tags that are gone (a re-created tag starts afresh)."""
        encoded = _encode_tags(tags if isinstance(tags, list) else list(tags))
        row = (image, fetched_at, encoded)
        if self._batch_depth:
            self._pending_tags[image] = row
            self._held()
            return
        with self._writing():
            self._db.execute(_PUT_TAGS, row)
            self._db.execute(_FORGET_GONE_TAGS, row)

    # -- decisions of list-only policies -------------------------------------------------------------------

    def decision(
        self, image: str, policy: str, current: str | None, tags_hash: str
    ) -> tuple[bool, str | None]:
        """``(True, chosen)`` when ``policy`` already decided for exactly these tags (``tags_hash``)."""
        key = (image, policy, current or "")
        pending = self._pending_decisions.get(key)
        row: tuple[str, str | None] | None = (pending[3], pending[4]) if pending is not None else None
        if row is None and image in self._read_ahead_images:
            row = self._read_ahead.get(key)
        elif row is None:
            row = self._db.execute(
                "SELECT tags_hash, chosen FROM decisions WHERE image = ? AND policy = ? AND current = ?",
                (image, policy, current or ""),
            ).fetchone()
        if row is None or row[0] != tags_hash:
            return False, None
        return True, row[1]

    def read_decisions(self, images: Iterable[str]) -> None:
        """Inside ``batch()``: read the stored decisions of ``images`` now, a statement per 500 images, for
        ``decision()`` to answer from until the batch ends. A row another process writes meanwhile is not
        seen; that costs a ranking, never a wrong answer (a decision is only reused for its own tags_hash)."""
        if not self._batch_depth:
            return
        wanted = [image for image in dict.fromkeys(images) if image not in self._read_ahead_images]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = "SELECT image, policy, current, tags_hash, chosen FROM decisions WHERE image IN "
            try:
                rows = self._db.execute(query + f"({marks})", chunk).fetchall()
            except sqlite3.OperationalError as exc:  # e.g. locked: decision() asks per image instead
                log.debug("registry metadata cache: decisions not read ahead: %s", exc)
                return
            for image, policy, current, tags_hash, chosen in rows:
                self._read_ahead[(image, policy, current)] = (tags_hash, chosen)
            self._read_ahead_images.update(chunk)

    def put_decision(
        self, image: str, policy: str, current: str | None, tags_hash: str, chosen: str | None
    ) -> None:
        row = (image, policy, current or "", tags_hash, chosen)
        if self._batch_depth:
            self._pending_decisions[row[:3]] = row
            self._held()
            return
        with self._writing():
            self._db.execute(_PUT_DECISION, row)

    # -- tag -> digest --------------------------------------------------------------------------------------

    def tag_digests(self, image: str) -> dict[str, TagDigest]:
        self._flush_tags_of(image)
        rows = self._db.execute(
            "SELECT tag, digest, verified_at, expires_at FROM tag_digests WHERE image = ?", (image,)
        )
        return {tag: TagDigest(digest, verified, expires) for tag, digest, verified, expires in rows}

    def put_tag_digests(self, image: str, entries: Mapping[str, TagDigest]) -> None:
        if not entries:
            return
        self._flush_tags_of(image)
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO tag_digests (image, tag, digest, verified_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(image, tag, e.digest, e.verified_at, e.expires_at) for tag, e in entries.items()],
            )

    # -- digest -> metadata ---------------------------------------------------------------------------------

    def digest_meta(self, image: str, digests: Iterable[str]) -> dict[str, DigestMeta]:
        wanted = list(dict.fromkeys(digests))
        result: dict[str, DigestMeta] = {}
        # sqlite limits bound parameters per statement; 500 stays far below every build's limit
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = "SELECT digest, created, platforms, source FROM digests WHERE image = ? AND digest IN "
            rows = self._db.execute(query + f"({marks})", (image, *chunk))
            for digest, created, platforms, source in rows:
                result[digest] = DigestMeta(
                    datetime.fromisoformat(created) if created else None,
                    frozenset(json.loads(platforms)) if platforms else None,
                    source,
                )
        return result

    def put_digest_meta(self, image: str, entries: Mapping[str, DigestMeta]) -> None:
        if not entries:
            return
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO digests (image, digest, created, platforms, source) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        image,
                        digest,
                        meta.created.isoformat() if meta.created else None,
                        json.dumps(sorted(meta.platforms)) if meta.platforms is not None else None,
                        meta.source,
                    )
                    for digest, meta in entries.items()
                ],
            )
