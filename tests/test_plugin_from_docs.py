"""The plugin in docs/plugins.md, copied out of the document, installs and works by name."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import numbapool
from numbapool import WindowPlan, WindowRule, explicit_axis
from numbapool.testing import check

DOC = Path(__file__).parents[1] / "docs" / "plugins.md"


def _block_after(text: str, marker: str, lang: str) -> str:
    m = re.search(re.escape(marker) + r"\s*```" + lang + r"\n(.*?)```", text, re.S)
    assert m, f"no {lang} block after {marker!r} in {DOC}"
    return m.group(1)


def test_minimal_plugin_from_the_docs_installs_and_is_callable_by_name(tmp_path):
    text = DOC.read_text()
    project = tmp_path / "numbapool-rms"
    (project / "src" / "numbapool_rms").mkdir(parents=True)
    (project / "pyproject.toml").write_text(_block_after(text, "`pyproject.toml`:", "toml"))
    (project / "src" / "numbapool_rms" / "__init__.py").write_text(
        _block_after(text, "`src/numbapool_rms/__init__.py`:", "python"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(project)],
                   check=True, capture_output=True, text=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    script = (
        "import numpy as np, numbapool\n"
        "x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)\n"
        "assert 'rms' in numbapool.poolers(), numbapool.poolers()\n"
        "print(numbapool.get('rms').source)\n"
        "print(repr(numbapool.pool('rms', x, 2).ravel().tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith("rms (numbapool_rms)")
    x = np.arange(1.0, 17.0).reshape(4, 4)
    expected = [np.sqrt(np.mean(x[i:i + 2, j:j + 2] ** 2)) for i in (0, 2) for j in (0, 2)]
    np.testing.assert_allclose(eval(out[1]), expected, rtol=1e-12)
    # The conformance kit passes on it, from the command line.
    done = subprocess.run([sys.executable, "-m", "numbapool", "check", "rms", "--ranks", "1",
                           "2"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout


def test_custom_window_rule_example_from_the_docs():
    code = _block_after(DOC.read_text(), "built with\n`numbapool.explicit_axis(length, start, "
                        "count)`:", "python")
    namespace = {"np": np, "WindowRule": WindowRule, "WindowPlan": WindowPlan,
                 "explicit_axis": explicit_axis}
    exec(code, namespace)
    rule = namespace["EveryOther"]()
    numbapool.register(numbapool.Pooler("every_other_doc", rule, numbapool.get("max").reduction))
    try:
        x = np.arange(10.0).reshape(1, 1, 10)
        # windows (0, 2), (1, 3), (4, 6), (5, 7): the max is the second element of each
        assert numbapool.pool("every_other_doc", x).ravel().tolist() == [2.0, 3.0, 6.0, 7.0]
        report = check("every_other_doc", ranks=(1, 2))
        assert report.ok, str(report)
    finally:
        numbapool.unregister("every_other_doc")
