"""The shape of the code: packages by layer with imports only downwards, short functions, config files
generated from the one schema, tests that mirror the packages, and docs that agree with the tree."""
import ast
import glob
import os
import subprocess

import pytest

from fixtures.paths import ROOT
from src.model_utils.config import SCHEMA, TARGETS, load_yaml, render_yaml

# Layers of the library, lowest first: a module may import its own package or a lower layer.
LAYER = {"model_utils": 0, "utils": 0, "data": 1, "model": 2, "training": 3, "inference": 4, "tools": 5}
LIBRARY = ("model_utils", "utils", "data", "model", "training", "inference")
ENTRY_POINTS = {"train", "eval", "export", "preprocess", "postprocess", "predict", "serve"}
MAX_FUNCTION_LINES = 60


def _modules():
    """{module name: path} of every package module under src/, nested packages included (the thin src/*.py entry
    points excluded)."""
    out = {}
    for path in glob.glob(os.path.join(ROOT, "src", "*", "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[rel.removesuffix(".__init__")] = path
    return out


def _imports(path):
    """Every `src...` module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _package(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "src" else None


def test_imports_only_go_down_the_layers_and_never_reach_tools_or_entry_points():
    modules = _modules()
    assert {_package(m) for m in modules} == set(LAYER), "a package is missing from LAYER (or LAYER names a gone one)"
    bad = []
    for mod, path in modules.items():
        own = _package(mod)
        for imp in _imports(path):
            if imp.split(".")[0] in ENTRY_POINTS:
                bad.append(f"{mod} imports the entry point {imp}")
            target = _package(imp)
            if imp.startswith("src.") and target is None and imp.split(".")[1] not in LAYER:
                bad.append(f"{mod} imports {imp}, a top-level command alias, not the library")
            if target in LAYER and target != own and LAYER[target] >= LAYER[own]:
                bad.append(f"{mod} ({own}, layer {LAYER[own]}) imports {imp} ({target}, layer {LAYER[target]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for n in graph[m]:
            if state.get(n) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(stack + [m, n])}")
            if n not in state:
                visit(n, stack + [m])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [])


def test_library_functions_are_at_most_60_lines():
    long = []
    for mod, path in _modules().items():
        if _package(mod) not in LIBRARY:
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{mod}.{node.name}: {n} lines")
    assert not long, long


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_config_files_are_the_schema_rendered_with_their_values(target):
    path = os.path.join(ROOT, TARGETS[target])
    values, helps = load_yaml(path)
    assert set(values) == set(SCHEMA) and helps == {k: key.help for k, key in SCHEMA.items()}
    assert values["device_target"] == target
    assert open(path, encoding="utf-8").read() == render_yaml(values, target), \
        f"{TARGETS[target]} differs from the schema: run `python -m src.model_utils.config --write`"


def test_scripts_map_targets_to_the_same_config_files():
    for target, name in list(TARGETS.items()) + [("Ascend310", TARGETS["Ascend"])]:
        out = subprocess.run(["bash", "-c", f"source scripts/args.sh; config_for {target}"], cwd=ROOT,
                             capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == name
    out = subprocess.run(["bash", "-c", "set -e; source scripts/args.sh; X=$(config_for TPU); echo after"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "after" not in out.stdout and "got 'TPU'" in out.stderr


def test_design_doc_names_every_file_and_the_readme_stays_short():
    tracked = subprocess.run(["git", "ls-files", "src", "scripts", "ascend310_infer", "tests", "docs", "*.py",
                              "*.yaml", "*.md", "*.toml", ".ci"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    design = open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8").read()
    missing = [f for f in tracked if not f.endswith("__init__.py") and f"`{f}`" not in design
               and not f.startswith("tests/data/samples/")]
    assert not missing, f"docs/design.md does not mention {missing}"
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
    assert len(readme) <= 300, f"README.md has {len(readme)} lines (at most 300; details go to docs/)"
    for doc in ("data", "distributed", "benchmarks", "reliability", "design"):
        assert f"docs/{doc}.md" in "\n".join(readme), f"the README links docs/{doc}.md"


def test_tests_mirror_the_packages():
    """One test folder per library package (and for the commands, tools and the project as a whole); the shared
    fixtures live apart from the test code."""
    folders = {d for d in os.listdir(os.path.join(ROOT, "tests")) if os.path.isdir(os.path.join(ROOT, "tests", d))
               and not d.startswith((".", "__"))}
    assert folders == set(LAYER) | {"commands", "project", "fixtures"} - set(), sorted(folders)
    stray = [f for f in os.listdir(os.path.join(ROOT, "tests")) if f.endswith(".py") and f != "conftest.py"]
    assert not stray, f"test files outside the package folders: {stray}"
    assert not glob.glob(os.path.join(ROOT, "tests", "fixtures", "test_*.py"))


def test_public_library_functions_have_docstrings_and_type_hints():
    """torchrec style: every public function and method of the library says what it takes and returns
    (config, network and callback arguments excepted: their types are the project's own objects). An override of
    a method documented in its base class (in the same module) has its base's docstring."""
    untyped_ok = {"cfg", "net", "prob_net", "graph", "log", "progress", "parallel", "config", "stream", "self", "cls"}
    missing = []
    for mod, path in _modules().items():
        if _package(mod) not in LIBRARY:
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

        def documented(cls: ast.ClassDef, method: str) -> bool:
            for base in (b.id for b in cls.bases if isinstance(b, ast.Name) and b.id in classes):
                fns = [f for f in classes[base].body if isinstance(f, ast.FunctionDef) and f.name == method]
                if (fns and ast.get_docstring(fns[0])) or documented(classes[base], method):
                    return True
            return False
        for node in tree.body:
            members = [(node, "")]
            if isinstance(node, ast.ClassDef):
                members = [(n, node.name + ".") for n in node.body]
            for fn, owner in members:
                if not isinstance(fn, ast.FunctionDef) or fn.name.startswith("_") or fn.name == "construct":
                    continue
                name = f"{mod}.{owner}{fn.name}"
                if not ast.get_docstring(fn) and not (owner and documented(node, fn.name)):
                    missing.append(f"{name}: no docstring")
                untyped = [a.arg for a in fn.args.args if a.annotation is None and a.arg not in untyped_ok]
                if untyped or fn.returns is None:
                    missing.append(f"{name}: no type hint for {untyped or 'the return value'}")
    assert not missing, "\n".join(missing)
