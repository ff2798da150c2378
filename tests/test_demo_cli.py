"""`numbapool demo` prints values the library computes, which match the NumPy reference."""

import subprocess
import sys

import numpy as np

from numbapool.demo import SEED_INPUT, seed_examples
from reference import ref_pool


def test_seed_examples_match_reference():
    x = SEED_INPUT
    expected = {
        "Max Pooling": ref_pool("max", x, 2, layout="channels_last")[0, :, :, 0],
        "Average Pooling": ref_pool("avg", x, 2, layout="channels_last")[0, :, :, 0],
        "Global Average Pooling": ref_pool("global_avg", x, layout="channels_last")[0],
        "Global Max Pooling": ref_pool("global_max", x, layout="channels_last")[0],
        "Min Pooling": ref_pool("min", x, 2, layout="channels_last")[0, :, :, 0],
    }
    rows = seed_examples()
    assert [r[0] for r in rows] == list(expected)
    for title, value, _printed, _agree in rows:
        np.testing.assert_allclose(value, expected[title], err_msg=title)


def test_demo_flags_the_tutorial_outputs_that_do_not_follow_from_its_input():
    agree = {title: ok for title, _, _, ok in seed_examples()}
    # By hand: avg [[3.75, 5.25], [11.5, 13.5]], global avg 136/16 = 8.5, min [[1, 2], [9, 11]].
    assert agree == {"Max Pooling": True, "Average Pooling": False,
                     "Global Average Pooling": False, "Global Max Pooling": True,
                     "Min Pooling": False}


def test_cli_demo_list_info():
    demo = subprocess.run([sys.executable, "-m", "numbapool", "demo"], capture_output=True,
                          text=True, check=True).stdout
    assert "[[ 3.75  5.25]\n [11.5  13.5 ]]" in demo
    assert "[8.5]" in demo
    assert "NumPy reshape+max" in demo
    listing = subprocess.run([sys.executable, "-m", "numbapool", "list"], capture_output=True,
                             text=True, check=True).stdout
    assert listing.split()[0] == "adaptive_avg"
    info = subprocess.run([sys.executable, "-m", "numbapool", "info", "lp"],
                          capture_output=True, text=True, check=True).stdout
    assert "param p (float, default 2.0)" in info
    bad = subprocess.run([sys.executable, "-m", "numbapool", "info", "mx"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "did you mean 'max'" in bad.stderr
