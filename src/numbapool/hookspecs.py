"""Pluggy hook specifications: how plugins (and the built-ins) add poolers."""

from __future__ import annotations

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "numbapool"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_poolers(register):
    """Register poolers by calling ``register(pooler)`` once per :class:`numbapool.Pooler`.

    Plugins implement this hook in a module named by an entry point in the ``numbapool``
    group::

        [project.entry-points.numbapool]
        myplugin = "myplugin"
    """
