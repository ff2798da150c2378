"""Turn (reduction, layout, variant) into a compiled, disk-cached Numba kernel.

On the CPU a kernel is a serial C callback per combination of argument kinds (dtypes and
ranks), run on every thread by :mod:`numbapool.kernels.launch`; on CUDA a ``numba.cuda.jit``
dispatcher.

Why generated files?  A kernel that closes over the reduction's dispatchers, or receives them
as arguments, misses Numba's on-disk cache in every new process (numba#6264), and first-class
function types cost ~2.4x at run time.  Instead the template source is written once to a file
in the numbapool cache directory, and executed with the reduction's dispatchers bound as module
*globals*: Numba inlines them like any global jitted function, and ``cache=True`` finds its
cache next to the file in every later process.

The file name carries a hash of the template and the module head it is written under (with
a CPU kernel's argument kinds), the reduction's code (with the jitted helpers it calls), the
modules whose LLVM IR the kernels inline (:data:`_IR_SOURCES`) and the library versions, so
changing any of them builds (and caches) a new kernel.  Files are written atomically with a
fixed modification time, so processes racing to create the same file agree on Numba's cache
stamp.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import types
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from .. import vmath
from ..reduction import Reduction
from . import launch, params, slots, streaming, transpose, vector_width, widen
from .launch import Launcher, kernel_function
from .rebind import is_jitted, rebound
from .templates import HEADER, decorator, hold_scratch, kernel_source, reassociates

__all__ = ["cache_dir", "get_kernel", "kernel_path", "load_module"]

_CODEGEN_VERSION = "6"  # bump when the way files are generated or loaded changes
_IR_SOURCES = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (
    vmath, vector_width, widen, params, launch, slots))).hexdigest()
"""The code of the modules whose intrinsics and overloads the kernels inline (LLVM IR written
in Python, which no jitted function's fingerprint sees), and of the jitted helpers they call
(compiled into a kernel's cached code, which Numba does not rebuild when they change): the
elementary functions, the vector width, the conversion, the parameter rows, the argument
views, the parameter-gradient rows and the masked kernels' batch tables.  A kernel is
rebuilt when they change."""
_FIXED_MTIME = 1_000_000_000  # any constant works; it only has to be the same everywhere
_lock = threading.RLock()
_kernels: dict[tuple[int, str, str, str], tuple[Reduction, Callable]] = {}


def cache_dir() -> Path:
    """Directory holding generated kernel sources (and Numba's cache beside them).

    ``$NUMBAPOOL_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/numbapool`` or
    ``~/.cache/numbapool``; falls back to a temporary directory when that is not writable.
    """
    env = os.environ.get("NUMBAPOOL_CACHE_DIR")
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "numbapool"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"numbapool-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _cpu_body(reduction: Reduction, layout: str, variant: str, kinds: tuple) -> str:
    """The C callback of a CPU kernel for arguments of ``kinds``: the template's
    ``def kernel(<arguments>):`` becomes ``def kernel(_slots, part, parts):``, a prologue
    that rebuilds the arguments, the body, and ``return 1``
    (:func:`numbapool.kernels.launch.kernel_function`); for a body that streams its output
    (:mod:`numbapool.kernels.streaming`, which must end with its ``_store_fence()``), after
    the import of its functions."""
    src = kernel_source(reduction, layout, variant)
    head, _, body = src.partition("\n")
    if not (head.startswith("def kernel(") and head.endswith("):")):
        raise ValueError(f"unexpected kernel head {head!r}")
    names = [a.strip() for a in head[len("def kernel("):-2].split(",")]
    if len(names) != len(kinds):
        raise TypeError(f"kernel {reduction.name}/{layout}/{variant} takes {len(names)} "
                        f"arguments ({', '.join(names)}), got {len(kinds)}")
    imports = ""
    if streaming.USES in body:  # (a kernel that streams its output binds the functions)
        if not body.endswith("\n    _store_fence()\n"):
            raise ValueError(f"kernel {reduction.name}/{layout}/{variant} streams its output "
                             "but does not end with _store_fence()")
        imports = streaming.IMPORTS
    if transpose.USES in body:  # (a kernel that transposes register blocks)
        imports += transpose.IMPORTS
    return imports + decorator(reduction, layout, variant) + hold_scratch(
        kernel_function(names, kinds, body))


def _source(reduction: Reduction, layout: str, variant: str, target: str = "cpu",
            kinds: tuple = ()) -> tuple[str, str]:
    if target == "cuda":
        from .cuda_templates import CUDA_DECORATOR, CUDA_HEADER, cuda_kernel_source
        header, body = CUDA_HEADER, CUDA_DECORATOR + cuda_kernel_source(reduction, layout,
                                                                        variant)
    else:
        header, body = HEADER, _cpu_body(reduction, layout, variant, kinds)
    h = hashlib.sha256()
    for part in (_CODEGEN_VERSION, header, body, reduction.fingerprint(), _IR_SOURCES,
                 numba.__version__, np.__version__):
        h.update(part.encode())
    key = h.hexdigest()[:20]
    header = header.format(name=reduction.name, kind=reduction.kind, layout=layout,
                           variant=variant, key=key)
    return header + body, key


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _path(reduction: Reduction, layout: str, variant: str, key: str,
          target: str = "cpu") -> Path:
    prefix = "np" if target == "cpu" else f"np_{target}"
    return cache_dir() / f"{prefix}_{_safe(reduction.name)}_{layout}_{variant}_{key}.py"


def kernel_path(reduction: Reduction, layout: str, variant: str, target: str = "cpu",
                kinds: tuple = ()) -> Path:
    """Where the generated source of this kernel lives (a CPU kernel's: for arguments of
    ``kinds``, see :func:`numbapool.kernels.launch.kind`)."""
    return _path(reduction, layout, variant,
                 _source(reduction, layout, variant, target, kinds)[1], target)


def _write_once(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.utime(tmp, (_FIXED_MTIME, _FIXED_MTIME))
    os.replace(tmp, path)


def load_module(path: Path, text: str, scope: dict[str, object]) -> types.ModuleType:
    """Write ``text`` to ``path`` (once) and execute it as a module with ``scope`` bound as
    globals.  A real module in sys.modules: Numba finds the kernel's globals through it, both
    when compiling and when it reloads a cached kernel in a later process."""
    _write_once(path, text)
    module = types.ModuleType(f"numbapool_generated_{path.stem}")
    module.__file__ = str(path)
    for name, value in scope.items():
        setattr(module, name, value)
    sys.modules[module.__name__] = module
    exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - our own template
    return module


_kernel_versions: dict[tuple[int, bool, bool], tuple[Callable, Callable]] = {}

_CALLED_ROLES = frozenset({"pgrad", "pgradw"})
"""The roles whose kernel versions are called, not inlined in Numba's IR (LLVM may still
inline them): the parameter gradients, which add into ``out``, a
:func:`numbapool.kernels.slots.slot_row` made in the call.  Inlined in Numba's IR, ``out``
is a value the kernel never reads again, and the dead-code pass Numba runs after inlining
an ``overload(inline="always")`` (vmath's ``vexp``, ``vlog``...) anywhere in the kernel
dropped the stores at a variable index, ``out[tap] += ...`` (``out[0]``, a static index,
is kept): the learned plugin's ``gated`` got all-zero ``dL/dw`` channels last, silently.
As an argument of a function of its own, ``out`` is live to the end."""


def kernel_version(fn: Callable, reassoc: bool = False, inline: bool = True) -> Callable:
    """``fn`` compiled again to be inlined into a kernel, in Numba's IR, with the kernel's
    flags: the ``numpy`` error model (a division by zero gives inf or NaN instead of a check
    and a branch to raise, which stops the loop around it from vectorising) and, if
    ``reassoc``, ``fastmath={'reassoc'}``.  Such flags are set on each instruction when a
    function is compiled, so a kernel's flags would not reach functions it merely calls;
    and a function left for LLVM to inline may be judged too large, leaving a call in the
    loop.  Jitted helpers that ``fn`` calls through its globals or closure are converted the
    same way, recursively."""
    key = (id(fn), reassoc, inline)
    entry = _kernel_versions.get(key)
    if entry is not None:
        return entry[1]
    clone = rebound(fn, lambda obj: kernel_version(obj, reassoc) if is_jitted(obj) else None)
    version = numba.njit(nogil=True, error_model="numpy",
                         inline="always" if inline else "never",
                         fastmath={"reassoc"} if reassoc else False)(clone)
    _kernel_versions[key] = (fn, version)  # keeps fn alive, so its id is not reused
    return version


def _load(reduction: Reduction, layout: str, variant: str, target: str,
          kinds: tuple = ()) -> Callable:
    text, key = _source(reduction, layout, variant, target, kinds)
    functions = reduction.functions()
    if target == "cuda":
        from .cuda_functions import device_functions
        functions = device_functions(functions)
    else:
        reassoc = reassociates(reduction, layout, variant)
        functions = {role: kernel_version(fn, reassoc, role not in _CALLED_ROLES)
                     for role, fn in functions.items()}
    scope = {f"_{role}": fn for role, fn in functions.items()}
    return load_module(_path(reduction, layout, variant, key, target), text, scope).kernel


def _cpu_kernel(reduction: Reduction, layout: str, variant: str) -> Launcher:
    def build(kinds: tuple) -> object:
        with _lock:
            return _load(reduction, layout, variant, "cpu", kinds)
    return Launcher(f"{reduction.name}/{layout}/{variant}", build)


def get_kernel(reduction: Reduction, layout: str, variant: str,
               target: str = "cpu") -> Callable:
    """The compiled-on-demand kernel for a reduction, layout, variant and target
    (``"cpu"`` or ``"cuda"``).

    On the CPU a :class:`~numbapool.kernels.launch.Launcher`: called with the template's
    arguments, it compiles (or reloads from disk) the kernel for their kinds on first use
    and runs it on every thread.  On CUDA the Numba dispatcher, which compiles each
    argument-type specialisation on first use and reloads it from disk in later processes.
    """
    key = (id(reduction), layout, variant, target)
    entry = _kernels.get(key)
    if entry is None:
        with _lock:
            entry = _kernels.get(key)
            if entry is None:
                # The entry keeps the reduction alive, so its id cannot be reused.
                kernel = (_cpu_kernel(reduction, layout, variant) if target == "cpu"
                          else _load(reduction, layout, variant, target))
                entry = (reduction, kernel)
                _kernels[key] = entry
    return entry[1]
