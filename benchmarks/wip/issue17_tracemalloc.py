"""Scratch (issue 17): `neural-ingest run` in-process under tracemalloc; every INTERVAL s, the lines whose
live allocations grew most since the first snapshot go to OUT. Usage: python issue17_tracemalloc.py OUT INTERVAL CONFIG..."""
import sys
import threading
import time
import tracemalloc

out, interval, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
tracemalloc.start(4)


def watch() -> None:
    first = None
    while True:
        time.sleep(interval)
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if first is None:
            first = snap
            continue
        with open(out, "a") as f:
            cur, peak = tracemalloc.get_traced_memory()
            f.write(f"=== {time.strftime('%H:%M:%S')} traced {cur >> 20} MiB peak {peak >> 20} MiB\n")
            for st in snap.compare_to(first, "traceback")[:12]:
                f.write(f"{st.size_diff >> 10} KiB {st.count_diff} blocks\n    " + "\n    ".join(st.traceback.format()[-8:]) + "\n")


threading.Thread(target=watch, daemon=True).start()
from neural_ingest.cli import main  # noqa: E402

sys.argv = ["neural-ingest", "run", *args]
main()
