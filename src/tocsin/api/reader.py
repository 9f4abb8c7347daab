"""The API's read-only view of the store, on a thread of its own beside the writer's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tocsin.store.base import Store
from tocsin.store.sqlite import SqliteStore

__all__ = ["StoreReader"]

T = TypeVar("T")


class StoreReader:
    """A read-only store used from one thread of its own, opened on first use."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: Store | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tocsin-api-read")

    def _get(self) -> Store:
        if self._store is None:
            store = SqliteStore(path=self._path, readonly=True)
            store.open()
            self._store = store
        return self._store

    async def run(self, fn: Callable[[Store], T]) -> T:
        """Run `fn` with the store on the reader's thread; StoreError passes through."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: fn(self._get())
        )

    async def close(self) -> None:
        """Close the store and the thread."""

        def close_store() -> None:
            if self._store is not None:
                self._store.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close_store)
        self._executor.shutdown(wait=True)
