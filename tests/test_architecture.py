"""The import direction documented in docs/architecture.md, and no import cycles.

Imports are read from the source (module level, function-local and ``TYPE_CHECKING`` alike),
so a lazy import cannot hide a cycle."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nasspeech"

#: package -> the nasspeech packages (or modules) it may import besides itself
ALLOWED = {
    "registry": set(),
    "kernels": set(),
    "ops": {"registry", "kernels"},
    "families": {"registry", "kernels", "ops"},
    "baselines": {"registry"},
    "genotype": {"registry", "io", "plots._common", "space.limits", "space.loading"},
    "space": {"registry", "kernels", "ops", "families", "genotype", "io", "lazy"},
    "search": {"registry", "kernels.precision", "genotype", "space", "config"},
    "memory": {"registry", "kernels.precision", "kernels.recompute", "space", "config", "search"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The nasspeech modules ``name`` imports (the longest module each import names)."""
    known = modules()
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("nasspeech.") and t != name and not name.startswith(t + "."):
                out.add(t)
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_architecture_allows(package):
    allowed = {f"nasspeech.{p}" for p in ALLOWED[package] | {package}}
    wrong = []
    for name, path in sorted(modules().items()):
        if name == f"nasspeech.{package}" or name.startswith(f"nasspeech.{package}."):
            for target in sorted(imports(name, path)):
                if not any(target == a or target.startswith(a + ".") for a in allowed):
                    wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_in_the_layered_packages():
    layered = {n: p for n, p in modules().items()
               if n.split(".")[1:2] and n.split(".")[1] in ALLOWED}
    graph = {n: imports(n, p) & set(layered) for n, p in layered.items()}
    cycles, index, low, stack, on = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


USER_SCRIPT = '''
import torch
from nasspeech import Genotype, Operation, SearchSpace, Supernet, get_family, get_op

space = SearchSpace.from_file("space.yaml")
net: Supernet = space.build_supernet()
genotype: Genotype = net.genotype()
op: Operation = get_op("cnn", "sep_conv_3x3")
rank: int = get_family("cnn").rank
logits: torch.Tensor = space.derive(genotype)(torch.zeros(1, 1, 8, 8))
reveal_type(space)
'''


@pytest.mark.skipif(shutil.which("mypy") is None and "mypy" not in sys.modules
                    and subprocess.run([sys.executable, "-c", "import mypy"],
                                       capture_output=True).returncode != 0,
                    reason="mypy is not installed (pip install mypy)")
def test_public_names_have_real_types_for_mypy(tmp_path):
    """``mypy --strict`` on a user script sees the classes, not ``Any``."""
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--ignore-missing-imports", "--no-incremental", str(script)],
        capture_output=True, text=True, cwd=tmp_path, env={"MYPYPATH": str(ROOT), "PATH": ""},
        timeout=600)
    assert 'Revealed type is "nasspeech.space.search_space.SearchSpace"' in run.stdout, run.stdout
    assert "error" not in run.stdout, run.stdout
