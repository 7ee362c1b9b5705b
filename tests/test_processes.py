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
