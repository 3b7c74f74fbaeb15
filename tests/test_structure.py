"""The package's shape: families stay apart, shared code names no family, imports have no cycles,
and the command line starts without torch."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "vqtool"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The vqtool modules a module imports, anywhere in it (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from . import x` may name a module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def family_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "families" else None


def test_families_import_no_other_family():
    for module, imported in graph().items():
        own = family_of(module)
        if own is None:
            continue
        others = {m for m in imported if family_of(m) not in (None, own)}
        assert not others, f"{module} imports another family: {sorted(others)}"


def test_shared_code_imports_no_family():
    for module, imported in graph().items():
        if family_of(module) is None:
            families = {m for m in imported if family_of(m) is not None}
            assert not families, f"shared module {module} imports a family: {sorted(families)} (use vqtool.registry)"


def test_no_import_cycles():
    edges = graph()
    done, path = set(), []

    def visit(module):
        if module in path:
            cycle = path[path.index(module):] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for imported in sorted(edges[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)


def test_every_family_has_the_same_files():
    from vqtool import registry

    for family in registry.families():
        folder = PACKAGE / "families" / family.name
        for required in ("__init__.py", "cli.py", "card.py", "task.py"):
            assert (folder / required).is_file(), f"{family.name} has no {required}"
        assert (folder / "codec.py").is_file() == bool(family.media), f"{family.name}: codec.py iff it has media"
        for target in family.architectures.values():
            module = target.split(":")[0]
            assert "." in module or (folder / f"{module}.py").is_file(), f"{family.name}: no {module}.py"


def test_help_version_and_metadata_commands_do_not_import_torch():
    script = ("import sys\n"
              "from vqtool.cli import build_app\n"
              "app = build_app()\n"
              "for args in (['--help'], ['--version'], ['encode', '--help'], ['decode', '--help'], "
              "['fade', '--help'], ['train', 'vqvae', '--help'], ['models', 'list'], ['models', 'info', 'speech'], "
              "['speakers']):\n"
              "    try:\n"
              "        app(args, prog_name='vqtool')\n"
              "    except SystemExit as exc:\n"
              "        assert exc.code == 0, (args, exc.code)\n"
              "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False", "a --help or a metadata command imported torch"
