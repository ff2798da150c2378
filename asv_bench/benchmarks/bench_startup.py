"""Compile time of a new specialisation, and a fresh process's first pool with a warm cache."""

import os
import subprocess
import sys
import tempfile

_SNIPPET = ("import numpy as np, numbapool; "
            "numbapool.pool('max', np.ones((2, 3, 8, 8), np.float32), 2)")


def _run(env):
    subprocess.run([sys.executable, "-c", _SNIPPET], env=env, check=True)


class TimeStartup:
    timeout = 300
    number = 1
    repeat = 5

    def setup(self):
        self.cache = tempfile.mkdtemp(prefix="numbapool-asv-")
        self.env = dict(os.environ, NUMBAPOOL_CACHE_DIR=self.cache)
        _run(self.env)  # warm the cache

    def timeraw_import(self):
        return "import numbapool", ""

    def timeraw_first_pool_warm_cache(self):
        # A fresh process (asv runs timeraw in a new interpreter): import + first pool, with
        # the kernels already in the on-disk cache.
        return f"import os; os.environ['NUMBAPOOL_CACHE_DIR'] = {self.cache!r}; {_SNIPPET}"

    def timeraw_first_pool_cold_cache(self):
        # Compile the first specialisation: a new, empty cache directory every round.
        return (f"import os, tempfile; os.environ['NUMBAPOOL_CACHE_DIR'] = "
                f"tempfile.mkdtemp(); {_SNIPPET}")
