"""The registry of poolers, filled through pluggy.

The built-in poolers are a plugin like any other (:mod:`numbapool.builtin`).  Third-party
plugins are modules named by entry points in the ``numbapool`` group; they are loaded the first
time the registry is used.  A plugin that fails to load or register is recorded (see
:func:`plugin_failures`) and reported with a warning; it never breaks the other poolers.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import threading
import warnings
from dataclasses import dataclass, replace

import pluggy

from . import hookspecs
from .pooler import Pooler

__all__ = ["Registry", "REGISTRY", "PluginFailure", "PluginLoadWarning"]


class PluginLoadWarning(UserWarning):
    """A numbapool plugin could not be loaded or failed to register its poolers."""


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    stage: str
    error: str


class Registry:
    """Name -> :class:`Pooler`, loaded lazily from the built-ins and entry points."""

    def __init__(self, entry_point_group: str = hookspecs.PROJECT) -> None:
        self._group = entry_point_group
        self._poolers: dict[str, Pooler] = {}
        self._failures: list[PluginFailure] = []
        self._plugins: list[str] = []
        self._loaded = False
        self._lock = threading.RLock()

    # loading -----------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            from . import builtin

            pm.register(builtin, name="numbapool.builtin")
            for ep in importlib.metadata.entry_points(group=self._group):
                try:
                    pm.register(ep.load(), name=f"{ep.name} ({ep.value})")
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not break us
                    self._fail(f"{ep.name} ({ep.value})", "import", exc)
            for impl in pm.hook.register_poolers.get_hookimpls():
                source = impl.plugin_name
                self._plugins.append(source)
                try:
                    impl.function(register=lambda p, _s=source: self._add(p, _s))
                except Exception as exc:  # noqa: BLE001
                    self._fail(source, "register", exc)
            self._loaded = True

    def _fail(self, plugin: str, stage: str, exc: BaseException) -> None:
        failure = PluginFailure(plugin, stage, f"{type(exc).__name__}: {exc}")
        self._failures.append(failure)
        warnings.warn(f"numbapool plugin {plugin} failed to {stage}: {failure.error}",
                      PluginLoadWarning, stacklevel=3)

    def _add(self, pooler: Pooler, source: str) -> Pooler:
        if not isinstance(pooler, Pooler):
            raise TypeError(f"register() expects a numbapool.Pooler, got "
                            f"{type(pooler).__name__}")
        pooler = replace(pooler, source=source)
        existing = self._poolers.get(pooler.name)
        if existing is not None:
            raise ValueError(f"pooler name {pooler.name!r} from {source} clashes with the one "
                             f"registered by {existing.source}")
        self._poolers[pooler.name] = pooler
        return pooler

    # public ------------------------------------------------------------------------------
    def register(self, pooler: Pooler, source: str = "register()") -> Pooler:
        """Add a pooler in-process (notebooks, tests).  Returns the registered pooler."""
        self._load()
        with self._lock:
            return self._add(pooler, source)

    def unregister(self, name: str) -> Pooler:
        """Remove a pooler; returns it."""
        self._load()
        with self._lock:
            return self._poolers.pop(self._lookup_name(name))

    def _lookup_name(self, name: object) -> str:
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        if name not in self._poolers:
            close = difflib.get_close_matches(name, list(self._poolers), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise LookupError(f"no pooler named {name!r}{hint} "
                              f"(available: {', '.join(sorted(self._poolers))})")
        return name

    def get(self, name: str) -> Pooler:
        if self._loaded and type(name) is str:  # (a known name, after loading: fast)
            pooler = self._poolers.get(name)
            if pooler is not None:
                return pooler
        self._load()
        return self._poolers[self._lookup_name(name)]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._poolers)

    def plugins(self) -> list[str]:
        self._load()
        return list(self._plugins)

    def failures(self) -> list[PluginFailure]:
        self._load()
        return list(self._failures)


REGISTRY = Registry()
