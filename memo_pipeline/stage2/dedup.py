"""Memory de-duplication: exact (normalised text per entity) and near-duplicate (embeddings).

Exact duplicates share an entity and a normalised text (case, inner whitespace and trailing
punctuation ignored); they are found by content, so a memory that a merge moved to another entity
still catches its duplicates. Near duplicates are memories of the same entity whose embeddings
have a cosine similarity of at least the threshold (``NEAR_DUPLICATE_THRESHOLD``, or the org's
``near_duplicate_threshold`` when its configuration defines one). Either way the memory already
stored survives and gains the new record in its provenance; the new text is not stored.

Stage 2 knows nothing of the vector store: ``NearDuplicates`` is handed an ``embed`` function
and a ``fetch`` function (vectors of stored memories by id) by the caller. Every text is embedded
once; the vectors are kept so that the caller can write them to the vector store without
embedding again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import psycopg

NEAR_DUPLICATE_THRESHOLD = 0.95

Embed = Callable[[Sequence[str]], Any]  # texts -> array (n, dim) of unit vectors
Fetch = Callable[[Sequence[str]], dict[str, Any]]  # memory ids -> vectors the store holds


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:31]


def normalize_memory_text(text: str) -> str:
    return re.sub(r"[\s.;:!]+$", "", " ".join(text.lower().split()))


def norm_hash(text: str) -> str:
    return _hash(normalize_memory_text(text))


def memory_id(org: str, entity_id: str, text: str) -> str:
    return "m" + _hash(org, entity_id, normalize_memory_text(text))


def threshold_for(org_spec: object) -> float:
    """The org's near-duplicate threshold; the default when its configuration sets none."""
    value = getattr(org_spec, "near_duplicate_threshold", None)
    return float(value) if value is not None else NEAR_DUPLICATE_THRESHOLD


class NearDuplicates:
    """Finds, for a new memory text, the stored memory of the same entity it nearly repeats.

    Candidates are the entity's current memories in PostgreSQL (inside the caller's transaction,
    so memories written earlier in the same batch count); their vectors come from this object's
    cache (texts embedded in this batch) or from the vector store, and memories the vector store
    lacks (a crash between the two writes) are embedded here.
    """

    def __init__(self, embed: Embed, fetch: Fetch, threshold: float = NEAR_DUPLICATE_THRESHOLD):
        self.embed = embed
        self.fetch = fetch
        self.threshold = threshold
        self.by_text: dict[str, np.ndarray] = {}
        self.by_memory: dict[str, np.ndarray] = {}
        self._candidates: dict[tuple[str, str], Candidates] = {}
        self.embedded = 0

    def prepare(self, texts: Iterable[str]) -> None:
        """Embed, in one batch, the texts that are about to be written."""
        todo = self.unknown(texts)
        if todo:
            self.add(todo, self.embed(todo))

    def unknown(self, texts: Iterable[str]) -> list[str]:
        """The texts without a vector yet, each once, in a stable order."""
        return sorted({t for t in texts if t not in self.by_text})

    def add(self, texts: Sequence[str], vectors: Any) -> None:
        """Vectors of ``texts`` embedded elsewhere (``embed`` on another thread)."""
        for text, vector in zip(texts, np.asarray(vectors), strict=True):
            self.by_text[text] = vector
        self.embedded += len(texts)

    def vector(self, text: str) -> np.ndarray:
        if text not in self.by_text:
            self.prepare([text])
        return self.by_text[text]

    def remember(self, mid: str, text: str) -> None:
        """A memory was stored with this text: its vector is known from now on."""
        self.by_memory[mid] = self.vector(text)

    def preload(self, conn: psycopg.Connection, ids: list[str]) -> None:
        """Read, in one go, the vectors of stored memories that checks are about to need."""
        missing = [m for m in ids if m not in self.by_memory]
        if not missing:
            return
        for mid, vector in self.fetch(missing).items():
            self.by_memory[mid] = np.asarray(vector, dtype=np.float32)
        unknown = [m for m in missing if m not in self.by_memory]
        if unknown:
            # Stored memories the vector store lacks (a crash between the two writes): embedded
            # from their text, read only now since this is rare.
            texts = {
                r["memory_id"]: r["text"]
                for r in conn.execute(
                    "select memory_id, text from memories where memory_id = any(%s)", (unknown,)
                )
            }
            self.prepare(texts.values())
            for mid, text in texts.items():
                self.by_memory[mid] = self.by_text[text]

    def _vectors(self, conn: psycopg.Connection, ids: list[str]) -> dict[str, np.ndarray]:
        self.preload(conn, ids)
        return {m: self.by_memory[m] for m in ids}

    def find(
        self,
        conn: psycopg.Connection,
        org: str,
        entity_id: str,
        text: str,
        ids: list[str] | None = None,
    ) -> tuple[str, float] | None:
        """(memory id, cosine) of the closest current memory at or above the threshold.

        ``ids`` are the entity's current memories when the caller has just read them; otherwise
        they are read here.
        """
        if ids is None:
            ids = [
                r["memory_id"]
                for r in conn.execute(
                    "select memory_id from memories where org_id = %s and entity_id = %s "
                    "and superseded_by is null order by memory_id",
                    (org, entity_id),
                )
            ]
        return self.closest(self.candidates(conn, ids), text)

    def candidates(
        self, conn: psycopg.Connection, ids: list[str], key: tuple[str, str] | None = None
    ) -> Candidates:
        """The vectors of these memories as one matrix, to check several texts against.

        With a ``key`` (org, entity id) the matrix is kept, with the memories added to it, and
        given again while the entity's current memories are exactly those: stacking them anew
        for every answer would cost more, for an entity with many memories, than the checks.
        """
        kept = self._candidates.get(key) if key is not None else None
        if kept is not None and kept.holds(ids):
            return kept
        vectors = self._vectors(conn, ids)
        made = Candidates(list(vectors), list(vectors.values()))
        if key is not None:
            self._candidates[key] = made
        return made

    def closest(self, candidates: Candidates, text: str) -> tuple[str, float] | None:
        """(memory id, cosine) of the closest candidate at or above the threshold."""
        if not candidates.ids:
            return None
        scores = candidates.matrix() @ self.vector(text)
        best = int(np.argmax(scores))
        score = float(scores[best])
        return (candidates.ids[best], score) if score >= self.threshold else None

    def vectors_for(self, mids: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already known for these memories, for the vector store write."""
        return {m: self.by_memory[m] for m in mids if m in self.by_memory}


class Candidates:
    """Memories to compare new texts with, their vectors in one matrix: an answer checks each of
    its texts against the same entity's memories, and adds its new ones as it goes (into spare
    rows, so that adding does not copy the matrix)."""

    def __init__(self, ids: list[str], vectors: list[np.ndarray]) -> None:
        self.ids = ids
        self._matrix = np.vstack(vectors) if vectors else None

    def add(self, mid: str, vector: np.ndarray) -> None:
        if self._matrix is None:
            self._matrix = np.empty((8, vector.shape[0]), dtype=vector.dtype)
        elif len(self.ids) == self._matrix.shape[0]:
            grown = np.empty((2 * len(self.ids), self._matrix.shape[1]), dtype=self._matrix.dtype)
            grown[: len(self.ids)] = self._matrix
            self._matrix = grown
        self._matrix[len(self.ids)] = vector
        self.ids.append(mid)

    def holds(self, ids: Sequence[str]) -> bool:
        """Exactly these memories, in any order."""
        return len(ids) == len(self.ids) and set(ids) == set(self.ids)

    def matrix(self) -> np.ndarray:
        assert self._matrix is not None, "no candidates"
        return self._matrix[: len(self.ids)]
