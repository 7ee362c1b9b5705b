"""Processes a test starts: in their own process group, tagged, and all ended when the test ends.

A process that starts services of its own (``make up`` starts each in its own session) leaves
process groups a ``killpg`` of its own group does not reach, and orphans that outlive it. So every
process started here carries a tag in its environment, which its descendants inherit; on the way
out, pass or fail, every process carrying the tag is killed, by id.

A tag alone is not enough: Airflow's components rename themselves with setproctitle, which
overwrites the memory ``/proc/<pid>/environ`` shows, so their tag can no longer be read. The test
process is therefore a child subreaper (``become_subreaper``): an orphan is re-parented to it, not
to init, and every descendant that appeared while a group ran is ended with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import psutil

TAG = "CRYPTOFLOW_TEST_PROCESS_TAG"
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def become_subreaper() -> None:
    """Orphans of this process's descendants become its children, so none escapes ``process_group``."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def descendants() -> set[psutil.Process]:
    """Every live process below this one (orphans included, once this is a subreaper)."""
    with contextlib.suppress(psutil.Error):
        return set(psutil.Process().children(recursive=True))
    return set()


def tagged(tag: str) -> list[psutil.Process]:
    """The live processes carrying ``tag`` (a ``process_group`` process's ``.tag``)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get(TAG) == tag:
                found.append(process)
    return found


def _started_by_one_of(process: psutil.Process, existing: set[psutil.Process]) -> bool:
    """Whether ``process`` runs below one of ``existing``: e.g. a backend a database server the test
    started earlier forks for a new connection, which is that server's, not the group's."""
    with contextlib.suppress(psutil.Error):
        return any(parent in existing for parent in process.parents())
    return False


def end_tagged(tag: str, grace_seconds: float = 10.0, existing: set[psutil.Process] | None = None) -> None:
    """SIGTERM every process carrying ``tag`` (and, given ``existing``, every new descendant that is not
    below one of them), then SIGKILL what is left after the grace period."""

    def alive() -> list[psutil.Process]:
        found = set(tagged(tag))
        if existing is not None:
            found |= {process for process in descendants() - existing if not _started_by_one_of(process, existing)}
        return list(found)

    # SIGKILL in rounds: a process forked while the previous round was being sent (an executor starting
    # a task's worker) was not in that round's list, and outlived it.
    for sig, wait in ((signal.SIGTERM, grace_seconds), *[(signal.SIGKILL, 10.0)] * 3):
        processes = alive()
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)
        psutil.wait_procs(processes, timeout=wait)
    left = alive()
    assert not left, f"processes of this test outlived SIGKILL: {left}"


@contextlib.contextmanager
def process_group(argv: list[str], env: dict[str, str] | None = None, **popen: Any) -> Iterator[subprocess.Popen]:
    """``subprocess.Popen`` in a new session; on exit the whole tree it started is ended."""
    tag = uuid.uuid4().hex
    existing = descendants()
    process = subprocess.Popen(argv, env={**(env or os.environ), TAG: tag}, start_new_session=True, **popen)
    process.tag = tag  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        end_tagged(tag, existing=existing)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


def run_to_end(argv: list[str], env: dict[str, str] | None = None, timeout: float = 180, **popen: Any) -> Any:
    """``subprocess.run`` with the discipline above: its own group, and nothing of it outlives the call.

    Returns a ``subprocess.CompletedProcess`` with text stdout and stderr.
    """
    with process_group(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{' '.join(argv)} did not end within {timeout:.0f} s") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)
