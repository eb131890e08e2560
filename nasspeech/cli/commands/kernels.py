"""``nasspeech kernels [--build] [--json]``: the compiled CPU kernels' state.

The kernels (:mod:`nasspeech.kernels.native`) are compiled the first time a process needs one.
``--build`` compiles them now, e.g. on a cluster's shared file system before its workers
start, or to see the compiler's error where a warning said they are unavailable. It also
says whether runs use the compiled CPU tensor cache (:mod:`nasspeech.kernels.cpu_cache`).
"""

from __future__ import annotations

import argparse
import json
import time

NAME = "kernels"
HELP = "show (or --build) the compiled CPU kernels: cache folder, state, loaded ops"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--build", action="store_true",
                   help="compile (if needed) and load the kernels now; exit 1 if that fails")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    import warnings

    from nasspeech.kernels import native

    seconds = None
    if args.build and native.native_enabled():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the error is printed below
            native.native_ops()
        seconds = round(time.perf_counter() - start, 1)
    from nasspeech.kernels.cpu_cache import cpu_cache_enabled

    status = native.native_status()
    status["cpu_cache"] = cpu_cache_enabled() and status["enabled"]
    if seconds is not None:
        status["build_or_load_s"] = seconds
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        state = ("disabled (NASSPEECH_NATIVE_KERNELS)" if not status["enabled"]
                 else "loaded" if status["loaded"] else "built, not loaded in this process"
                 if status["built"] else "not built yet (compiled on first use)")
        print(f"compiled CPU kernels: {state}")
        print(f"cache:   {status['cache']}")
        print(f"sources: {', '.join(status['sources'])}")
        if status["ops"]:
            print(f"ops:     {', '.join(status['ops'])}")
        print("tensor cache: " + ("on in search and training runs on the CPU "
                                  "(NASSPEECH_CPU_CACHE=0 switches it off)" if status["cpu_cache"]
                                  else "off (NASSPEECH_CPU_CACHE or NASSPEECH_NATIVE_KERNELS)"))
        if seconds is not None:
            print(f"took:    {seconds} s")
        if status["error"]:
            print(f"error:   {status['error']}")
    return 1 if args.build and status["enabled"] and not status["loaded"] else 0
