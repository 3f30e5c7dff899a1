"""``kernel``: ``numba.njit(cache=True, ...)`` that survives having nowhere to cache.

Numba caches compiled kernels beside their source (``__pycache__``) and, when the
installed package folder is read-only, in the user cache folder (``~/.cache`` or
``$NUMBA_CACHE_DIR``): a second process then loads them instead of compiling.
A kernel's cache is made when it first compiles or loads, not when its module is
imported (``_CacheOnFirstCompile``): a process pays for the kernels it runs. Where no
location is writable, numba refuses to make one ("cannot cache function"); then the
kernel compiles without caching, and the first such kernel says so, in one line.

numba marks a cached kernel stale when its own source file changes, not when a
module whose functions it inlines or calls, or whose constants it reads, does
(``simd``, ``gemm``'s epilogue, ``pool_dense`` inside ``chain``'s program): a
kernel could load code older than its sources. Such a module is one the kernel's
module imports, directly or through another: numba compiles a global only from
what the module's namespace holds, and a name gets there by an import. So a
kernel's cache stamp is the content hash of its own module and of every module of
the ``runtime`` package it imports, transitively (``stamped_sources``), found from
the import statements (at any depth, absolute or relative). ``jit.py`` itself (the
compile options) is in every stamp, every kernel module importing it; so is
``runtime/config.py`` where a kernel module imports it, though its knobs are read
by Python code only (see its docstring). A package's ``__init__`` counts only where
a name is taken from it, not when Python runs it on the way to a submodule (a
kernel reads nothing from it). An edit to ``pool.py`` recompiles the kernels of
``pool`` and of the modules that import it (``chain``, ``matvec``), not every kernel.
"""

from __future__ import annotations

import ast
import hashlib
import re
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numba
from numba.core.caching import FunctionCache, NullCache

_warned = False
# IEEE results for a division by zero instead of Python's exception: the exception's
# branch keeps LLVM from vectorising any loop that divides (tanh's rational form went
# from 3.9 to 0.33 ns an element). "contract" lets a multiply and an add fuse into
# one FMA instruction, which rounds once instead of twice.
_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}
# The folder that holds the ``runtime`` package: module names resolve against it.
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "runtime"
_IMPORT_LINE = re.compile(r"^[ \t]*(?:import|from)[ \t][^\n]*", re.MULTILINE)


@cache
def _imports(source: bytes, package: tuple[str, ...] | None) -> tuple[tuple[str, tuple], ...]:
    """The import statements of ``source``, a module of ``package``, at any depth, as
    (absolute module name, the names taken from it: none for ``import module``).

    Parsing a whole kernel module with ``ast`` costs milliseconds (170 ms for the
    package), which every process would pay at its start. So only the lines that begin
    with ``import`` or ``from`` are parsed, each with its continuation lines; a
    docstring's prose that begins so does not parse and is skipped, and an import
    quoted in a docstring counts (a stamp too wide only recompiles more)."""
    text = source.decode("utf-8")
    found = []
    pos = 0
    while match := _IMPORT_LINE.search(text, pos):
        statement, end = match.group().strip(), match.end()
        # An import's continuation lines: until its parentheses close, or after a
        # backslash (at most a screenful: prose with an open parenthesis is no import).
        for _ in range(60):
            if not (statement.count("(") > statement.count(")") or statement.endswith("\\")):
                break
            if end >= len(text):
                break
            next_end = text.find("\n", end + 1)
            next_end = len(text) if next_end < 0 else next_end
            statement += "\n" + text[end + 1 : next_end].rstrip()
            end = next_end
        try:
            tree = ast.parse(statement)
        except SyntaxError:
            pos = match.end()  # prose in a docstring, not an import: read on after it
            continue
        pos = end
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((alias.name, ()) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    if package is None or node.level - 1 > len(package):
                        continue  # not relative to a package we know
                    parts = package[: len(package) - (node.level - 1)]
                    base = ".".join([*parts, *([base] if base else [])])
                found.append((base, tuple(alias.name for alias in node.names)))
    return tuple(found)


def _module_file(name: str, root: Path) -> Path | None:
    """The source of module ``name`` of the package under ``root``, or None."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.parent / (base.name + ".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _resolve(imports: tuple[tuple[str, tuple], ...], root: Path) -> frozenset[Path]:
    """The package's modules that ``imports`` take names from (cached: the set of files
    does not change in a process; their contents may, and key ``_imports``)."""
    files = set()
    for module, names in imports:
        found = _module_file(module, root)
        if found is not None and found.name == "__init__.py":
            # ``from runtime.kernels import gemm`` takes a submodule, not a name of
            # ``runtime/kernels/__init__.py``, which counts only for a name of its own.
            submodules = [_module_file(f"{module}.{name}", root) for name in names]
            files.update(f for f in submodules if f is not None)
            if names and None not in submodules:
                continue
        if found is not None:
            files.add(found)
    return frozenset(files)


def _imported_files(path: Path, source: bytes, root: Path) -> frozenset[Path]:
    """The package's modules whose names ``path`` (holding ``source``) imports."""
    try:
        package = path.relative_to(root).parent.parts
    except ValueError:
        package = None  # outside the package: its relative imports are not ours
    return _resolve(_imports(source, package), root)


def _sources(path: Path, root: Path) -> dict[Path, bytes]:
    """``path`` and every module of the package under ``root`` that it imports,
    transitively, each with its contents."""
    path = path.resolve()
    contents = {path: path.read_bytes()}
    todo = [path]
    while todo:
        at = todo.pop()
        for found in _imported_files(at, contents[at], root):
            if found not in contents:
                contents[found] = found.read_bytes()
                todo.append(found)
    return contents


def stamped_sources(path: Path, root: Path = ROOT) -> list[Path]:
    """The files whose contents key the cache of ``path``'s kernels: ``path`` and every
    module of the package under ``root`` that it imports, transitively."""
    return sorted(_sources(path, root))


def module_stamp(path: Path, root: Path = ROOT) -> str:
    """The content hash of ``stamped_sources(path, root)``."""
    digest = hashlib.sha256()
    for source, content in sorted(_sources(path, root).items()):
        try:
            name = source.relative_to(root).as_posix()
        except ValueError:
            name = source.name
        digest.update(name.encode())
        digest.update(content)
    return digest.hexdigest()


@cache
def _stamp_of(filename: str) -> str:
    return module_stamp(Path(filename))


def _function_cache(dispatcher):
    """numba's ``FunctionCache`` of ``dispatcher``, its index keyed on ``module_stamp``
    of the kernel's module as well as on its own file's (numba's ``IndexDataCacheFile``
    discards an index whose stamp differs); a ``NullCache`` where there is nowhere to
    cache, said once."""
    global _warned
    try:
        cache = FunctionCache(dispatcher.py_func)
    except RuntimeError as exc:
        if "cannot cache" not in str(exc):
            raise
        if not _warned:
            _warned = True
            warnings.warn(
                "runtime: no writable numba cache location (set NUMBA_CACHE_DIR); "
                "kernels compile in every process",
                RuntimeWarning,
                stacklevel=2,
            )
        return NullCache()
    index = cache._cache_file
    index._source_stamp = (index._source_stamp, _stamp_of(dispatcher.py_func.__code__.co_filename))
    return cache


class _CacheOnFirstCompile:
    """A kernel's cache, made when numba first looks a signature up in it (a compile or
    a load). Making numba's ``FunctionCache`` finds its folder and checks that it is
    writable (it creates and deletes a file there), and hashing a module's sources
    reads them: for the 140 kernels that the engine's import defines, most of which a
    model never runs, that cost every process about 0.05 s of its start."""

    def __init__(self, dispatcher) -> None:
        self._dispatcher = dispatcher

    def __getattr__(self, name: str):
        cache = self._dispatcher._cache = _function_cache(self._dispatcher)
        return getattr(cache, name)


def kernel(**options) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        dispatcher = numba.njit(**{**_OPTIONS, **options})(fn)
        if hasattr(dispatcher, "_cache"):  # not a plain function (NUMBA_DISABLE_JIT=1)
            dispatcher._cache = _CacheOnFirstCompile(dispatcher)
        return dispatcher

    return decorate
