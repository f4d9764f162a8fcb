"""The forkserver that forks trial processes survives a scheduler's SIGTERM to the whole job."""

from __future__ import annotations

import importlib
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


PRELOADED = textwrap.dedent(
    """
    import os, sys, time
    from frameworm_lightning import SearchRunner  # the runner's modules, as a search script imports them
    from frameworm_lightning.runner._forkserver import forkserver_ready, start_forkserver

    if __name__ == "__main__":  # the libraries imported here only: trial processes never run this
        sys.path.insert(0, sys.argv[1])  # as pip would install them
        import heavylib, threadlib, brokenlib
        from checker import trial  # the user's own module
        ctx = start_forkserver(lightning=False)
        for _ in range(3):
            child = ctx.Process(target=trial)
            child.start()
            child.join()
            assert child.exitcode == 0
        assert forkserver_ready()
    """
)
CHECKER = "import sys\n\ndef trial():\n    print('trial sees', 'heavylib' in sys.modules, flush=True)\n"


def _library(folder: Path, name: str, body: str) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text(textwrap.dedent(body))


def test_the_forkserver_imports_the_libraries_the_search_imported_once_for_all_trials(tmp_path: Path) -> None:
    # A search script importing scikit-learn at its top made every trial process import it
    # again: 0.4 s a trial of the README's demo, against 0.25 s of training. Now the
    # forkserver imports, once, what the search process had imported from site-packages.
    site = tmp_path / "site-packages"
    log = tmp_path / "imports.log"
    _library(site, "heavylib", f"""
        import os
        with open({str(log)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        """)
    _library(site, "threadlib", """
        import threading, time
        threading.Thread(target=time.sleep, args=(600,), daemon=True, name="threadlib-poller").start()
        """)
    _library(site, "brokenlib", """
        import os
        if os.environ.get("FRAMEWORM_FORKSERVER") == "1":
            raise RuntimeError("only imports in the search process")
        """)
    script = tmp_path / "search.py"
    script.write_text(PRELOADED)
    (tmp_path / "checker.py").write_text(CHECKER)
    out = subprocess.run([sys.executable, str(script), str(site)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    importers = log.read_text().split()
    # The search process, then the forkserver; none of the three trials.
    assert len(importers) == 2, importers
    assert out.stdout.count("trial sees True") == 3
    # What could not be imported there is left to the trials; a thread it started is named. The
    # runner's modules import: the forkserver prepared itself when _forkserver.py was first imported,
    # which an earlier preload did halfway through importing the run loop, so the runner then met
    # the loop half-initialised (ImportError), and later preloads' finalizers stayed on the exit list.
    assert "1 module(s) of the search process did not import here, left to the trials: brokenlib" in out.stderr
    assert "started Python thread(s) threadlib-poller" in out.stderr


def test_only_installed_libraries_are_preloaded_in_the_order_of_their_first_import(tmp_path: Path) -> None:
    from frameworm_lightning.runner._forkserver import _modules_to_preload

    site = tmp_path / "site-packages"
    _library(site, "zeta_lib", "")
    _library(site, "alpha_lib", "")
    _library(site, "ray", "")  # a Ray worker's own modules: no trial uses them
    (tmp_path / "mine.py").write_text("X = 1\n")
    sys.path[:0] = [str(tmp_path), str(site)]
    try:
        import mine  # noqa: F401 - the user's own module: left to the trials
        import zeta_lib  # noqa: F401
        import alpha_lib  # noqa: F401
        real_ray = sys.modules.pop("ray", None)  # the installed one, if an earlier test imported it
        importlib.import_module("ray")
        names = _modules_to_preload()
    finally:
        del sys.path[:2]
        for name in ("mine", "zeta_lib", "alpha_lib", "ray"):
            sys.modules.pop(name, None)
        if real_ray is not None:
            sys.modules["ray"] = real_ray
    assert "mine" not in names and "json" not in names and "ray" not in names  # user code, the stdlib, Ray
    assert "frameworm_lightning.runner._forkserver" in names  # ours, wherever it is installed
    assert names.index("zeta_lib") < names.index("alpha_lib")  # imported in that order here

