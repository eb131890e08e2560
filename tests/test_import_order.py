"""Every module of the package imports on its own, first, in a fresh interpreter state.

A cycle through a package's ``__init__`` only bites when one particular module is imported
first (e.g. ``nasspeech.genotype`` before ``nasspeech.space``); the suite's usual import order
hides it. One subprocess imports each module with every ``nasspeech`` module forgotten before.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "nasspeech"

SCRIPT = textwrap.dedent("""
    import importlib, sys, traceback
    failed = []
    for name in sys.argv[1:]:
        for loaded in [m for m in sys.modules if m == "nasspeech" or m.startswith("nasspeech.")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception:
            failed.append(name + ": " + traceback.format_exc(limit=-3))
    print("\\n".join(failed))
    sys.exit(1 if failed else 0)
""")


def modules() -> list[str]:
    names = []
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_first():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *modules()], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
