"""Loaded by every Python started with this directory on PYTHONPATH (`mixed_bench.py
--probe-memory` puts it on the server's): in `studios serve`, a thread appends what holds the
process's memory to $MEMPROBE_FILE every $MEMPROBE_EVERY seconds, one
JSON object a line: RSS, SQLite's own allocations (`sqlite3_memory_used()`, all connections:
mostly their page caches) and the Python objects' memory blocks (`sys.getallocatedblocks()`).
Telling them apart says whether a growing RSS is Python objects kept (a leak) or a cache."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
import threading
import time


def _probe(path: str, every: float) -> None:
    name = ctypes.util.find_library("sqlite3") or "libsqlite3.so.0"
    lib = ctypes.CDLL(name)  # the library the sqlite3 module uses (same soname, same copy)
    lib.sqlite3_memory_used.restype = ctypes.c_longlong
    page = os.sysconf("SC_PAGE_SIZE")
    began = time.monotonic()
    with open(path, "a", buffering=1) as out:
        while True:
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * page
            out.write(json.dumps({"t": round(time.monotonic() - began, 1), "wall": round(time.time(), 1), "rss_mb": round(rss / 1e6, 1),
                                  "sqlite_mb": round(lib.sqlite3_memory_used() / 1e6, 2), "python_blocks": sys.getallocatedblocks()}) + "\n")
            time.sleep(every)


_path = os.environ.get("MEMPROBE_FILE")
if _path and "serve" in sys.argv[1:2]:
    threading.Thread(target=_probe, args=(_path, float(os.environ.get("MEMPROBE_EVERY", "5"))), name="memprobe", daemon=True).start()
