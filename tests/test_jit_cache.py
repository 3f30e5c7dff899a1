"""Compiled kernels are cached for the next process; no cache location is not fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from runtime.kernels import jit

ROOT = Path(__file__).resolve().parents[1]
# A guard against a hung compile, not a speed target: compiling every kernel from an
# empty cache took 1,048 s of CPU (48 min wall, loaded) on an AMD EPYC family 25
# model 1 (Zen 3, AVX2), session 16, against 1200 s as the old limit.
EMPTY_CACHE_TIMEOUT = 2400
pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="NUMBA_DISABLE_JIT=1: nothing is compiled"
)

# LeNet-5 compiles into one program: its first call runs (and compiles) that program's
# kernel only, none of the step path's (issue 13: "the first call compiles and runs
# only the path the plan uses"). A small step-path conv then runs its two kernels:
# three output channels (>= GEMM_FEW_ROWS): the direct conv (its padded input, then
# the GEMM reading it in place).
PROBE = """
import json, sys, numpy as np, runtime
sys.path.insert(0, "tests")
from runtime.kernels import chain, conv, pool
s = runtime.InferenceSession("exported/lenet5.onnx")
s.run(None, {"input": np.zeros((2, 1, 28, 28), np.float32)})
step_kernels = [conv._conv_nchw_direct_gemm, conv._pad_phases, conv._conv_nchw_im2col_gemm,
                conv._im2col, conv._epilogue, pool._avg_pool3d]
unused = sum(len(k.signatures) for k in step_kernels)
from onnx_helpers import single_node_model
w = np.ones((3, 2, 3, 3), np.float32)
model, feeds = single_node_model("Conv", {"x": np.ones((1, 2, 5, 5), np.float32)},
                                 initializers={"w": w}, group=1)
steps = runtime.InferenceSession(model, compile_plans=False)
steps.run(None, feeds)
ks = [chain.run_images_serial, conv._pad_phases, conv._conv_nchw_direct_gemm]
print(json.dumps({"hits": sum(sum(k.stats.cache_hits.values()) for k in ks),
                  "misses": sum(sum(k.stats.cache_misses.values()) for k in ks),
                  "unused": unused}))
"""


@pytest.mark.slow
def test_second_process_loads_the_kernels_from_the_cache(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=ROOT,
            env=env,
            text=True,
            capture_output=True,
            timeout=EMPTY_CACHE_TIMEOUT,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["unused"] == 0  # LeNet-5's first call compiled no step-path kernel
    assert runs[0]["misses"] == 3 and runs[0]["hits"] == 0  # compiled, then written
    assert runs[1]["hits"] == 3 and runs[1]["misses"] == 0  # loaded, nothing compiled
    assert list((tmp_path / "numba").rglob("*.nbi"))


@pytest.mark.slow
def test_warmup_compiles_every_kernel_ahead(warmed_cache):
    """`cnn warmup` in one process (the suite's first, into its cache: empty in CI); a
    model's first call in the next compiles nothing."""
    assert warmed_cache.returncode == 0, warmed_cache.stderr[-2000:]
    assert "compiled and cached" in warmed_cache.stdout
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=EMPTY_CACHE_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["misses"] == 0 and stats["hits"] == 3


WARMUP_COVERS = """
import importlib, json
from runtime import kernel_table
from runtime.ops.registry import OPS
from runtime.warmup import warmup
warmup()
names = set(kernel_table.every_kernel())
for versions in OPS.values():
    for version in versions:
        names.update(version.kernels)
missing = []
for name in sorted(names):
    module, fn = name.split(".")
    if not getattr(importlib.import_module("runtime.kernels." + module), fn).signatures:
        missing.append(name)
print(json.dumps(missing))
"""


@pytest.mark.slow
def test_warmup_reaches_every_declared_kernel():
    """What `cnn warmup` must compile is derived from the kernel table and the ops'
    declared kernels (``register(kernels=...)``): every one has a compiled signature
    after it, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", WARMUP_COVERS],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=EMPTY_CACHE_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_no_cache_location_compiles_anyway(monkeypatch):
    monkeypatch.setattr(jit, "_warned", False)
    namespace: dict = {}
    # A function made by exec has no source file, so numba finds no place to cache it.
    exec("def triple(x):\n    return 3 * x\n", namespace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn = jit.kernel()(namespace["triple"])
        assert not caught  # the cache is made when the kernel first compiles
        assert fn(np.float32(2.0)) == 6.0
        assert fn(np.float64(2.0)) == 6.0
    assert len(caught) == 1 and "no writable numba cache location" in str(caught[0].message)


def test_importing_the_kernels_makes_no_cache(tmp_path):
    """numba's cache of a kernel (its folder found and checked writable, its module's
    sources hashed) is made when the kernel first compiles or loads: the engine's import
    pays for none of its 140 kernels, a model's first run for the ones it runs."""
    probe = (
        "import json, numpy as np\n"
        "from numba.core.registry import CPUDispatcher\n"
        "import runtime.engine\n"
        "from runtime.kernels import jit, reduce\n"
        "kernels = [k for m in list(__import__('sys').modules.values()) if m and\n"
        "           m.__name__.startswith('runtime.kernels.') for k in vars(m).values()\n"
        "           if isinstance(k, CPUDispatcher)]\n"
        "lazy = sum(isinstance(k._cache, jit._CacheOnFirstCompile) for k in kernels)\n"
        "x, out = np.ones((2, 8), np.float32), np.zeros(2, np.float32)\n"
        "reduce.reduce_rows(x, out, 0)\n"
        "print(json.dumps([len(kernels), lazy, type(reduce.reduce_rows._cache).__name__]))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    kernels, lazy, made = json.loads(out.stdout.strip().splitlines()[-1])
    assert kernels > 100 and lazy == kernels
    assert made == "FunctionCache" and list(tmp_path.rglob("reduce.reduce_rows-*.nbi"))


@pytest.mark.parametrize(
    "kernel, shape",
    [("conv._conv_nchw_im2col_gemm", (3, 2, 3, 3)),
     ("gemm._conv_nchw_pointwise_gemm", (4, 2, 1, 1)),
     ("depthwise.depthwise2d", (4, 1, 3, 3)),  # two filters a channel: phased planes
     ("depthwise.depthwise2d_lanes", (2, 1, 3, 3))],
)  # fmt: skip
def test_a_conv_compiles_once_with_or_without_its_bias(kernel, shape):
    """A read-only initializer bias and the zeros of an absent one are one array type:
    numba would compile each kernel twice otherwise, and `cnn warmup` could not cover
    both (a model compiled after it)."""
    import importlib

    from onnx_helpers import single_node_model

    import runtime

    module, name = kernel.split(".")
    fn = getattr(importlib.import_module(f"runtime.kernels.{module}"), name)
    w = np.ones(shape, np.float32)
    x = {"x": np.ones((1, 2, 6, 6), np.float32)}
    group = 2 if shape[1] == 1 else 1  # depthwise: a group per input channel
    counts = []
    for with_bias in (True, False):
        weights = {"w": w, "b": np.ones(shape[0], np.float32)} if with_bias else {"w": w}
        model, feeds = single_node_model("Conv", x, initializers=weights, group=group)
        runtime.InferenceSession(model, compile_plans=False).run(None, feeds)
        counts.append(len(fn.signatures))  # other tests in this process may add theirs
    assert counts[1] == counts[0], fn.signatures


# Callers of shared kernels, each compiled here (an empty cache: a caller loaded from
# the cache compiles none of its callees, which then list no signature).
SHARED = """
import json, sys, numpy as np, runtime
sys.path.insert(0, "tests")
from onnx_helpers import single_node_model
from runtime.kernels import col2im, pool
x = {"x": np.ones((1, 2, 6, 6), np.float32)}
w, b = np.ones((2, 3, 2, 2), np.float32), np.ones(3, np.float32)
cases = [
    ("MaxPool", {}, {"kernel_shape": [2, 2], "strides": [2, 2]}, False),  # dense planes
    ("MaxPool", {}, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, False),  # padded
    ("MaxPool", {}, {"kernel_shape": [2, 2], "strides": [2, 2]}, True),  # a program's
    ("ConvTranspose", {"w": w}, {"strides": [2, 2]}, False),
    ("ConvTranspose", {"w": w, "b": b}, {"strides": [2, 2]}, False),
]
for op, weights, attrs, program in cases:
    model, feeds = single_node_model(op, x, initializers=weights, **attrs)
    runtime.InferenceSession(model, compile_plans=program).run(None, feeds)
print(json.dumps({k.__name__: [str(s) for s in k.signatures]
                  for k in (pool.pool_dense, col2im.col2im_planes)}))
"""


@pytest.mark.slow
def test_shared_kernels_compile_once_whoever_calls_them(tmp_path):
    """No caller passes a literal (``1``, ``True``, ``0``) or a read-only array where
    another passes a variable or a writable one: each would compile the kernel once
    more, in every process whose cache lacks it, and `cnn warmup` would compile it
    again. pool_dense runs under dense and padded max pooling and in a compiled
    program; col2im_planes under ConvTranspose with and without a bias."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run(
        [sys.executable, "-c", SHARED],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=EMPTY_CACHE_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    signatures = json.loads(out.stdout.strip().splitlines()[-1])
    for name, sigs in signatures.items():
        assert len(sigs) == 1, (name, sigs)


def test_kernel_caches_are_stamped_with_their_module_and_its_imports(tmp_path):
    """numba keys a cached kernel on its own file only; the index also carries the hash
    of its module and of every runtime module that one imports, transitively, so a
    change to simd.py (inlined everywhere) recompiles gemm's kernels instead of loading
    old code, and a change to pool.py does not."""
    import pickle

    # The runtime under test: the source tree, or site-packages where tox installed it.
    package = Path(jit.__file__).resolve().parents[1]
    gemm_py = package / "kernels" / "gemm.py"
    names = {p.relative_to(package).as_posix() for p in jit.stamped_sources(gemm_py)}
    assert {"kernels/gemm.py", "kernels/simd.py", "kernels/jit.py", "kernels/activation.py",
            "config.py", "memory.py"} <= names  # fmt: skip
    assert "kernels/pool.py" not in names and "__init__.py" not in names
    probe = (
        "import numpy as np\n"
        "from runtime.kernels import gemm\n"
        "a, b = np.ones((1, 2, 4), np.float32), np.ones((1, 4, 5), np.float32)\n"
        "gemm.gemm_rows(gemm.pack_a(a), gemm.pack_b(b), np.zeros((1, 2, 5), np.float32), 2, 5)\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(package.parent)}
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True, timeout=600)
    (index,) = tmp_path.rglob("gemm._gemm_f32_rows-*.nbi")
    with open(index, "rb") as f:
        pickle.load(f)  # numba's version
        stamp, _ = pickle.loads(f.read())
    assert stamp[1] == jit.module_stamp(gemm_py)


# A package laid out as ours: kernels that import each other, absolutely, relatively,
# inside a function, a package's name and a submodule through the package.
SYNTHETIC = {
    "runtime/__init__.py": "from runtime.kernels.pool import pool\n",
    "runtime/config.py": "BLOCK = 8\n",
    "runtime/memory.py": "from runtime.errors import TooLarge\n",
    "runtime/errors.py": "class TooLarge(Exception):\n    pass\n",
    "runtime/kernels/__init__.py": '"""Kernels."""\n',
    "runtime/kernels/jit.py": "OPTIONS = {}\n",
    "runtime/kernels/simd.py": (
        "from runtime.kernels.jit import OPTIONS\n\ndef vload(x):\n    return x\n"
    ),
    "runtime/kernels/gemm.py": (
        '"""GEMM.\n\nfrom the docstring (prose, not an import)\n"""\n'
        "from runtime.config import BLOCK\n"
        "from .simd import (\n    vload,\n)\n\n"
        "def gemm(x):\n    from runtime.memory import TooLarge\n    return vload(x)\n"
    ),
    "runtime/kernels/conv.py": "from runtime.kernels import gemm\n",
    "runtime/kernels/pool.py": "import runtime.kernels.simd\n\ndef pool(x):\n    return x\n",
    "runtime/kernels/winograd.py": "from runtime import kernels\n",
}  # fmt: skip


def _synthetic_package(root: Path) -> dict[str, Path]:
    paths = {}
    for name, text in SYNTHETIC.items():
        paths[name] = root / name
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(text)
    return paths


def test_a_stamp_covers_what_its_module_imports_and_nothing_else(tmp_path):
    paths = _synthetic_package(tmp_path)
    conv = paths["runtime/kernels/conv.py"]

    def closure(name):
        return {
            p.relative_to(tmp_path).as_posix() for p in jit.stamped_sources(paths[name], tmp_path)
        }

    assert closure("runtime/kernels/conv.py") == {
        "runtime/kernels/conv.py", "runtime/kernels/gemm.py", "runtime/kernels/simd.py",
        "runtime/kernels/jit.py", "runtime/config.py", "runtime/memory.py", "runtime/errors.py",
    }  # fmt: skip
    assert closure("runtime/kernels/pool.py") == {
        "runtime/kernels/pool.py", "runtime/kernels/simd.py", "runtime/kernels/jit.py"
    }  # fmt: skip
    # A name taken from a package counts its __init__ (and what that imports).
    assert "runtime/kernels/__init__.py" in closure("runtime/kernels/winograd.py")

    before = jit.module_stamp(conv, tmp_path)
    assert jit.module_stamp(conv, tmp_path) == before  # a content hash: the same twice
    # (b) Unrelated modules, and package __init__ files Python only passes through.
    for name in ("runtime/kernels/pool.py", "runtime/kernels/winograd.py",
                 "runtime/__init__.py", "runtime/kernels/__init__.py"):  # fmt: skip
        paths[name].write_text(SYNTHETIC[name] + "# edited\n")
        assert jit.module_stamp(conv, tmp_path) == before, name
    # (a) Each module it imports, directly or through another (simd through gemm's
    # relative import, errors through memory's, imported inside a function).
    for name in ("runtime/kernels/gemm.py", "runtime/kernels/simd.py", "runtime/kernels/jit.py",
                 "runtime/config.py", "runtime/errors.py", "runtime/kernels/conv.py"):  # fmt: skip
        paths[name].write_text(SYNTHETIC[name] + "# edited\n")
        after = jit.module_stamp(conv, tmp_path)
        assert after != before, name
        before = after


def test_the_import_scan_finds_every_import_that_ast_finds():
    """The stamps read only the lines that begin with ``import`` or ``from`` (parsing
    whole modules would cost every process 170 ms at its start): over every module of
    the runtime package, that finds each import statement that parsing the whole file
    finds (and at most imports quoted in a docstring besides)."""
    import ast

    for path in sorted((ROOT / "runtime").rglob("*.py")):
        package = path.relative_to(ROOT).parent.parts
        source = path.read_bytes()
        scanned = set(jit._imports(source, package))
        parsed = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                parsed.update((alias.name, ()) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                parts = package[: len(package) - node.level + 1] if node.level else ()
                base = ".".join([*parts, *filter(None, [node.module])])
                parsed.add((base, tuple(alias.name for alias in node.names)))
        assert parsed <= scanned, (path, parsed - scanned)
