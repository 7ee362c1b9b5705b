"""Which Celery worker ran a task when two run on one machine: Airflow's ``[core] hostname_callable``.

A task instance records the ``hostname`` of the worker that ran it. On separate machines (or
containers) that tells the workers apart by itself; the topology test runs two on one host, so each
worker is started with its own name in ``WORKER_NAME``, which the task processes it starts inherit
and report as their host. Kept apart from the other helpers: every task process imports it.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME = "CRYPTOFLOW_TEST_WORKER_NAME"
HOSTNAME_CALLABLE = f"{__name__}.worker_hostname"


def worker_hostname() -> str:
    return os.environ.get(WORKER_NAME) or socket.getfqdn()
