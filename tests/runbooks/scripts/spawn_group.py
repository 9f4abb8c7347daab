"""Fork a grandchild that ignores SIGTERM and holds stdout; write both pids to argv[1].

argv[2] is "wait" (this process sleeps too, ignoring SIGTERM) or "exit" (it exits at once,
leaving the grandchild behind in its process group with the output pipes open).
"""

import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.write(f"{os.getpid()} {child}\n")
print("started", flush=True)
if sys.argv[2] == "wait":
    time.sleep(60)
