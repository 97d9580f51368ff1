"""A sample gives the GIL up as few times as it can.

The samples come from a background thread (pyleakhunt/sampler.py), which
must win the GIL from the program's main thread each time it gave it up:
behind a busy program that costs up to a switch interval each time.  The
resident set size, which Python's open(), read() and close() read with
eight releases of the GIL, is read in C.
"""

from __future__ import annotations

from helpers import assert_clean, run_python


def test_a_sample_opens_no_file_on_the_sampling_thread():
    # Python's file calls give the GIL up (open, fstat, isatty, lseek,
    # read, close): reading /proc/self/statm at every sample cost about
    # eight releases, each worth up to a switch interval behind a busy
    # main thread.  The audit hook sees every open() and os.open().
    proc = run_python(
        """
        import os, sys, tempfile, threading, time
        opened = []

        def hook(event, args):
            if event == "open" and threading.current_thread().name.startswith(
                "pyleakhunt-"
            ):
                opened.append(args[0])

        sys.addaudithook(hook)
        from pyleakhunt.watcher import LeakWatcher

        path = os.path.join(tempfile.mkdtemp(), "timeline.plh")
        watcher = LeakWatcher(interval=0.02, path=path).start()
        kept = []
        while len(watcher.samples) < 6:  # five on the sampling thread
            kept.append(str(len(kept)))
        watcher.stop()
        assert opened == [], opened
        print("OK")
        """
    )
    assert_clean(proc)
