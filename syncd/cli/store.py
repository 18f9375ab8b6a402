"""``syncd recount``: rebuild the store's maintained counts, run against the store itself."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from syncd.errors import StoreError


async def _recount(settings: Any) -> tuple[dict[Any, int], dict[Any, int]]:
    from syncd.store import create_store

    store = create_store(settings.daemon)
    await store.open()
    try:
        await store.recount_tallies()
        return await store.counts(), await store.link_counts()
    finally:
        await store.close()


def cmd_recount(args: argparse.Namespace) -> int:
    """Rebuild the queue and link counts from the entries and links; print them."""
    from syncd.cli.client import EXIT_FAILED, EXIT_OK, load_or_exit

    settings = load_or_exit(args.config)
    try:
        queue, links = asyncio.run(_recount(settings))
    except StoreError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for (direction, status), n in sorted(queue.items(), key=lambda kv: str(kv[0])):
        print(f"queue {direction.value} {status.value}: {n}")
    for (obj, status), n in sorted(links.items(), key=lambda kv: str(kv[0])):
        print(f"links {obj.value} {status}: {n}")
    return EXIT_OK


def register(sub: Any, add: Any) -> None:
    """Add ``syncd recount``."""
    add(
        "recount",
        cmd_recount,
        "rebuild the store's queue and link counts from its rows (after editing it by hand)",
    )
