"""The tests' own process discipline: nothing a test starts outlives it, however it hides."""

import subprocess
import sys
import time

import psutil

from tests.support.processes import process_group, tagged

# A child that starts a grandchild in a new session, renames it the way Airflow's components do
# (setproctitle overwrites the memory /proc/<pid>/environ shows, so its tag can no longer be
# read), prints the grandchild's pid and exits: the grandchild is an orphan.
ORPHAN_MAKER = """
import subprocess, sys
grandchild = subprocess.Popen(
    [sys.executable, "-c", "import setproctitle, signal; setproctitle.setproctitle('airflow x ' * 400); "
     "print('ready', flush=True); signal.pause()"],
    start_new_session=True, stdout=subprocess.PIPE, text=True,
)
assert grandchild.stdout.readline() == "ready\\n"
print(grandchild.pid, flush=True)
"""


def test_an_orphan_that_hides_its_tag_is_ended_with_its_group():
    with process_group([sys.executable, "-c", ORPHAN_MAKER], stdout=subprocess.PIPE, text=True) as maker:
        orphan = psutil.Process(int(maker.stdout.readline()))
        maker.wait(60)
        assert orphan.is_running()
        assert orphan not in tagged(maker.tag), "the tag should be unreadable, as with Airflow's components"
    deadline = time.monotonic() + 30
    while orphan.is_running() and orphan.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE


# A server that forks a worker every 0.2 s, as PostgreSQL forks a backend per connection.
FORKING_SERVER = """
import subprocess, sys, time
while True:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
"""


def test_the_workers_a_server_started_earlier_forks_are_not_ended_with_a_later_group():
    with process_group([sys.executable, "-c", FORKING_SERVER]) as server:
        with process_group([sys.executable, "-c", "import time; time.sleep(2)"]):
            time.sleep(1)  # the server forks workers while the later group runs
        workers = psutil.Process(server.pid).children()
        assert workers, "the server forked no worker"
        assert all(worker.is_running() for worker in workers), "a worker of the server was ended with the group"
