"""A run's CPU seconds count its environment worker's too: the figure behind `cpu_s`."""

from __future__ import annotations

import subprocess
import sys
import time

from lever_transfer.runtime import cpu_seconds

BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n" \
       "import sys; sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)"


def test_a_live_child_process_cpu_time_is_counted():
    before = cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        assert cpu_seconds() - before >= 0.6  # the child burned 0.6 s and is still alive
    finally:
        child.kill()
        child.wait()


def test_an_ended_child_still_counts_and_the_total_never_falls():
    before = cpu_seconds()
    subprocess.run([sys.executable, "-c", BURN.replace("time.sleep(30)", "pass")], check=True,
                   capture_output=True)
    after = cpu_seconds()
    assert after - before >= 0.6
    time.sleep(0.01)
    assert cpu_seconds() >= after
