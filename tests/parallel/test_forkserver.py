"""The forkserver that forks trial processes survives a scheduler's SIGTERM to the whole job."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, signal, time
    from frameworm_lightning.runner._forkserver import start_forkserver

    if __name__ == "__main__":
        ctx = start_forkserver(lightning=False)
        first = ctx.Process(target=time.sleep, args=(0,))
        first.start()
        first.join()  # the forkserver is up
        server = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and os.path.exists(f"/proc/{pid}/cmdline")
                  and b"multiprocessing.forkserver" in open(f"/proc/{pid}/cmdline", "rb").read()
                  and open(f"/proc/{pid}/stat").read().split(")")[1].split()[1] == str(os.getpid())]
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # this script is the search: it handles its own
        os.killpg(os.getpgid(0), signal.SIGTERM)  # as timeout(1) or a job scheduler does
        time.sleep(1.0)
        state = open(f"/proc/{server[0]}/stat").read().split(")")[1].split()[0]
        print("forkserver", "alive" if state not in ("Z", "X") else "dead")
        second = ctx.Process(target=time.sleep, args=(0,))
        second.start()
        second.join()
        print("second trial process exited", second.exitcode)
    """
)


def test_a_sigterm_to_the_whole_process_group_leaves_the_forkserver_serving(tmp_path: Path) -> None:
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         start_new_session=True)
    assert out.returncode == 0, out.stderr[-3000:]
    # Alive, not restarted: a start under way when it died would have failed with EOFError.
    assert out.stdout.split("\n")[:2] == ["forkserver alive", "second trial process exited 0"]


EARLY = textwrap.dedent(
    """
    import os, signal, sys, time
    from frameworm_lightning.runner._forkserver import start_forkserver

    if __name__ == "__main__":
        signum = getattr(signal, sys.argv[1])
        # This script is the search: it handles the signal itself (a handler, as the search's,
        # which exec resets: SIG_IGN would be inherited by the forkserver).
        signal.signal(signum, lambda signum, frame: None)
        ctx = start_forkserver(lightning=False)
        os.killpg(os.getpgid(0), signum)  # while the forkserver still imports its preloads
        first = ctx.Process(target=time.sleep, args=(0,))
        first.start()
        first.join()
        print("first trial process exited", first.exitcode)
    """
)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_the_forkserver_still_imports_leaves_it_serving(tmp_path: Path, signame: str) -> None:
    # A job preempted, or Ctrl-C in a terminal (SIGINT to the foreground process group), in
    # the first seconds of a search (the forkserver imports torch for several): the first
    # trial's start failed with EOFError, the search exited 1 (not 143 or 130) and the trial
    # was stored FAILED, so a resumed grid never ran its point.
    script = tmp_path / "search.py"
    script.write_text(EARLY)
    out = subprocess.run([sys.executable, str(script), signame], capture_output=True, text=True, timeout=300,
                         start_new_session=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:1] == ["first trial process exited 0"]
