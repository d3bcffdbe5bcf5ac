"""The package's structure: layers that import downward only, no import circles,
one kernel name in three places, modules of a readable size.

The layer map is ``docs/architecture.md``'s; this test is its enforcement.
"""
import ast
import inspect
from pathlib import Path

import pytest

import fastsae
from fastsae import backends

PACKAGE = Path(fastsae.__file__).resolve().parent

#: module-name prefix -> layer (the longest matching prefix wins)
LAYERS = {
    "fastsae.exceptions": 0, "fastsae._version": 0, "fastsae.core": 0,
    "fastsae.reference": 1, "fastsae.kernels": 1, "fastsae.cuda": 1,
    "fastsae.backends": 2,
    "fastsae.params": 3, "fastsae.optim": 3, "fastsae._dask": 3, "fastsae.warmup": 3,
    "fastsae.base": 4, "fastsae.autoencoder": 4, "fastsae.softmax": 4, "fastsae.stacked": 4,
    "fastsae.conv": 4, "fastsae.convae": 4, "fastsae.convnet": 4, "fastsae.preprocess": 4,
    "fastsae.audio": 4, "fastsae.datasets": 4,
    "fastsae.pipeline": 5, "fastsae.viz": 5, "fastsae.io": 5, "fastsae.demo": 5,
    "fastsae.distributed": 5, "fastsae.recipes": 5,
    "fastsae.cli": 6, "fastsae.benchmarks": 6,
    "fastsae": 7,          # the package itself: the public names
}
#: packages of layer 1 that must not import each other (the reference is the oracle)
BACKEND_PACKAGES = ("fastsae.reference", "fastsae.kernels", "fastsae.cuda")
#: the estimators, which the audio front end must not import (it may use their base class)
ESTIMATORS = ("fastsae.autoencoder", "fastsae.softmax", "fastsae.stacked",
              "fastsae.conv", "fastsae.convae", "fastsae.convnet", "fastsae.preprocess")


def _modules():
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        out[name] = (path, is_package)
    return out


MODULES = _modules()


def _layer(name):
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[best]


def _resolve(importer, is_package, node):
    """Absolute fastsae module names an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = importer.split(".")
        if node.level:
            base = base[:len(base) - node.level + (1 if is_package else 0)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module
        subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES]
        # ``from pkg import sub`` loads the submodule (pkg's __init__ counts as a parent,
        # below); ``from pkg import name`` loads pkg itself
        names = subs + ([mod] if len(subs) < len(node.names) else [])
    found = []
    for name in names:
        while name and name not in MODULES:      # a name imported from a module
            name = name.rpartition(".")[0]
        if name.startswith("fastsae"):
            found.append(name)
    return found


def _graph():
    edges = {}
    for name, (path, is_package) in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = set()
        for node in ast.walk(tree):             # function-level imports count too
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(name, is_package, node):
                    targets.add(target)
                    # importing a.b.c runs the __init__ of a.b, unless we are inside it
                    parent = target.rpartition(".")[0]
                    while parent and parent != "fastsae":
                        if not (name == parent or name.startswith(parent + ".")):
                            targets.add(parent)
                        parent = parent.rpartition(".")[0]
        targets.discard(name)
        edges[name] = targets
    return edges


GRAPH = _graph()


def test_every_module_has_a_layer():
    assert all(_layer(name) is not None for name in MODULES)
    assert len(MODULES) > 60


def test_layers_import_downward_only():
    upward = sorted(f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
                    for a, targets in GRAPH.items() for b in targets if _layer(b) > _layer(a))
    assert not upward, "\n".join(upward)


def test_the_reference_and_the_backends_do_not_import_each_other():
    crossing = sorted(f"{a} imports {b}" for a, targets in GRAPH.items() for b in targets
                      for pa in BACKEND_PACKAGES for pb in BACKEND_PACKAGES
                      if pa != pb and (a == pa or a.startswith(pa + "."))
                      and (b == pb or b.startswith(pb + ".")))
    assert not crossing, "\n".join(crossing)


def test_the_audio_front_end_does_not_import_the_estimators():
    bad = sorted(f"{a} imports {b}" for a, targets in GRAPH.items() if a.startswith("fastsae.audio")
                 for b in targets if b in ESTIMATORS)
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert not circles, "\n".join(circles)


def test_the_layer_test_sees_upward_imports_and_circles():
    # the checks above must be able to fail: a made-up upward import is found
    fake = ast.parse("from ..autoencoder import SparseAutoencoder").body[0]
    assert _resolve("fastsae.kernels.sae", False, fake) == ["fastsae.autoencoder"]
    assert _layer("fastsae.kernels.sae") < _layer("fastsae.autoencoder")
    assert "fastsae.core.checks" in GRAPH["fastsae.core.args"]
    assert "fastsae._dask" in GRAPH["fastsae.autoencoder"]


def test_no_module_above_600_lines():
    long = {name: n for name, (path, _) in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long


# -- one kernel name in three places -------------------------------------------------

def _defined_in(package, area, name):
    """Whether fastsae/<package>/<area>.py defines ``name`` at top level (no import)."""
    path = PACKAGE / package / f"{area}.py"
    if not path.exists():
        return False
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def _signature_in(package, area, name):
    tree = ast.parse((PACKAGE / package / f"{area}.py").read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    a = fn.args
    return ([x.arg for x in a.posonlyargs + a.args], [x.arg for x in a.kwonlyargs])


@pytest.mark.parametrize("backend", list(backends.BACKENDS))
@pytest.mark.parametrize("name", list(backends.KERNELS))
def test_each_kernel_lives_in_its_area_in_every_backend(backend, name):
    package = backends.BACKENDS[backend].split(".")[1]
    area = backends.KERNELS[name]
    gap = (backend, name) in backends.GAPS
    assert backends.implements(backend, name) is not gap
    assert _defined_in(package, area, name) is not gap, \
        f"fastsae/{package}/{area}.py {'defines' if gap else 'lacks'} {name}"
    if not gap:
        assert _signature_in(package, area, name) == _signature_in("reference", area, name)


def test_gaps_are_named_with_reasons_and_refused_clearly():
    for (backend, name), reason in backends.GAPS.items():
        assert backend in backends.BACKENDS and name in backends.KERNELS and len(reason) > 10
        with pytest.raises(fastsae.BackendUnavailableError, match=name):
            backends.get_function(backend, name)
    for name in backends.KERNELS:                     # the CPU backends have no gap
        assert backends.implements("numpy", name) and backends.implements("numba", name)
        fn = backends.get_function("numba", name)
        assert fn.__module__ == f"fastsae.kernels.{backends.KERNELS[name]}"
        assert inspect.signature(fn) == inspect.signature(backends.get_function("numpy", name))


def test_implements_does_not_import_numba_cuda():
    import subprocess
    import sys
    code = ("import sys, fastsae.backends as b; "
            "assert all(isinstance(b.implements('cuda', n), bool) for n in b.KERNELS); "
            "assert 'numba.cuda' not in sys.modules and 'cupy' not in sys.modules; "
            "import fastsae; assert 'numba.cuda' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_package_and_the_compiling_child_load_lazily():
    """``import fastsae`` loads no estimator, and a process that only compiles kernels
    (what fastsae.warmup starts) loads no scikit-learn; every public name still resolves."""
    import subprocess
    import sys
    code = ("import sys, fastsae; light = 'sklearn' not in sys.modules; "
            "import fastsae.warmup, fastsae.kernels.convnet, fastsae.kernels.stacked; "
            "print(light, 'sklearn' in sys.modules, 'fastsae.autoencoder' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "False"]
    for name in fastsae.__all__:
        assert getattr(fastsae, name) is not None, name
    assert set(fastsae.__all__) <= set(dir(fastsae))
    import sklearn.exceptions
    assert issubclass(fastsae.NotFittedError, sklearn.exceptions.NotFittedError)
    assert fastsae.NotFittedError is fastsae.exceptions.NotFittedError
    with pytest.raises(AttributeError, match="no attribute"):
        fastsae.no_such_name
