"""One identity per writer: it names the writer's spool folder and its write marker.

Two writers must never share either: two stream shards spooling into one folder overwrite each
other's entries, and two writers sharing one marker hide each other's partitions from the loader.
The caller makes the id once per writer; a restarted writer that makes the same id (an Airflow task
retried for the same DAG run and map index) carries on its predecessor's spool and marker.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import socket

_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")
_READABLE_CHARS = 120  # room for the hash in a folder name (255) and an object key segment
_in_this_process = itertools.count(1)


def writer_id(*parts: object) -> str:
    """A safe key segment and folder name for a writer made of ``parts``.

    Characters other than letters, digits, ``_`` and ``.`` become ``_``; a short digest of the parts
    as given keeps two ids apart that only differ in those characters (``a:b`` and ``a+b``).
    """
    if not parts:
        raise ValueError("a writer id needs at least one part")
    raw = "\0".join(str(part) for part in parts)
    readable = "-".join(_UNSAFE.sub("_", str(part)).strip("._") or "_" for part in parts)[:_READABLE_CHARS]
    return f"{readable}-{hashlib.sha1(raw.encode()).hexdigest()[:8]}"


def airflow_writer_id(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """A stream task's writer: the same for every try of one task instance, distinct otherwise."""
    return writer_id("stream", dag_id, task_id, run_id, -1 if map_index is None else map_index)


def process_writer_id() -> str:
    """A writer in this process (the command line): host and pid, and a count should a process run several."""
    return writer_id("stream", socket.gethostname(), os.getpid(), next(_in_this_process))
