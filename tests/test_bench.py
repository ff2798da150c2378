"""`numbapool bench` on tiny cases: its rows, its summary, and the backward it times."""

import numpy as np
import pytest

import numbapool
from numbapool.bench import Case, backward_call, run, summarise


def test_bench_rows_and_summary():
    lines = []
    cases = [Case("tiny_max", "max", (1, 2, 6, 6), dict(kernel_size=2)),
             Case("tiny_avg", "avg", (1, 2, 8), dict(kernel_size=3, stride=2, padding=1))]
    rows = run(cases, backward=True, threads=1, repeat=1, out=lines.append)
    assert [(r["case"], r["layout"], r["pass_"]) for r in rows] == [
        ("tiny_max", "channels_first", "forward"), ("tiny_max", "channels_first", "fwd+idx"),
        ("tiny_max", "channels_first", "backward"), ("tiny_max", "channels_last", "forward"),
        ("tiny_max", "channels_last", "fwd+idx"), ("tiny_max", "channels_last", "backward"),
        ("tiny_avg", "channels_first", "forward"), ("tiny_avg", "channels_first", "backward"),
        ("tiny_avg", "channels_last", "forward"), ("tiny_avg", "channels_last", "backward")]
    assert all(r["ours"] > 0 and r["roofline"] > 0 and r["bandwidth"] > 0 for r in rows)
    # the bandwidth is measured beside each case and layout, shared by its passes
    assert len({r["bandwidth"] for r in rows}) == 4
    assert lines[0].startswith("threads: 1; parallel-copy read+write bandwidth")
    assert any(line.startswith("forward: geometric-mean speed-up") for line in lines)
    assert any(line.startswith("backward: geometric-mean speed-up") for line in lines)
    assert any(line.startswith("(copy bandwidth beside the cases: ") for line in lines)


def test_backward_is_timed_with_the_forward_indices():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    gy = np.ones((2, 3, 4, 4), np.float32)
    with_idx = backward_call("max", x, gy, dict(kernel_size=2))
    assert "indices" in with_idx.keywords
    assert "indices" not in backward_call("max", x, gy, dict(kernel_size=2),
                                          recompute=True).keywords
    assert "indices" not in backward_call("avg", x, gy, dict(kernel_size=2)).keywords
    np.testing.assert_array_equal(with_idx(), numbapool.pool_grad("max", x, gy, 2))


def test_summary_of_rows():
    lines = []
    rows = [dict(case="a", layout="channels_first", pass_="forward", speedup=4.0,
                 roofline=0.5),
            dict(case="b", layout="channels_last", pass_="forward", speedup=1.0,
                 roofline=0.9),
            dict(case="a", layout="channels_first", pass_="backward", speedup=2.0,
                 roofline=0.1)]
    summarise(rows, lines.append)
    assert lines == [
        "forward: geometric-mean speed-up over torch 2.00x; slowest b/channels_last 1.00x",
        "backward: geometric-mean speed-up over torch 2.00x; slowest a/channels_first 2.00x",
        "forward: median share of the memory roofline (all but 'small') 70%"]


def test_bench_restores_thread_counts():
    import numba

    before = numba.get_num_threads()
    run([Case("tiny", "avg", (1, 1, 4), dict(kernel_size=2))], layouts=("channels_first",),
        threads=1, repeat=1, out=lambda line: None)
    assert numba.get_num_threads() == before


def test_plugin_pairs_are_timed_alternately_and_report_their_ratio():
    from numbapool.bench import time_pairs

    lines = []
    rows = time_pairs(pairs=[("gem", "avg"), ("fractional_max", "max"),
                             ("no_such_pooler", "max")],
                      layouts=("channels_first",), shape=(1, 2, 8, 8), rounds=1, repeat=1,
                      out=lines.append)
    assert [(r["plugin"], r["builtin"], r["layout"], r["geometry"]) for r in rows] == [
        ("gem", "avg", "channels_first", "example"),
        ("fractional_max", "max", "channels_first", "example"),
        ("fractional_max", "max", "channels_first", "same out"),
        ("fractional_max", "max", "channels_first", "same out+k")]
    for r in rows:
        assert r["plugin_time"] > 0 and r["builtin_time"] > 0
        assert r["ratio"] == r["plugin_time"] / r["builtin_time"]
    # max's example is 3x3/s2/p1: 4x4 outputs of an 8x8 plane; fractional's output_ratio 0.7
    # gives int(8 * 0.7) = 5 per axis, its second row the built-in's 4x4, its third that
    # with the built-in's 3x3 windows.
    assert [r["outputs"] for r in rows] == [1.0, 25 / 16, 1.0, 1.0]
    assert rows[2]["options"] == {"seed": 0, "output_size": (4, 4)}
    assert rows[3]["options"] == {"seed": 0, "output_size": (4, 4), "kernel_size": 3}
    assert "(not installed)" in lines[2] and "no_such_pooler" in lines[2]
    assert lines[3].startswith("asv") and lines[3].split()[1] == "gem"
    assert lines[3].endswith(f"{rows[0]['ratio']:.2f}x")
    assert "1.56x" in lines[4] and "same out " in lines[5] and "same out+k" in lines[6]
    # the summary: the largest ratio among the rows whose outputs match the built-in's
    # (fractional's first row, with 25/16 of the outputs, does not count)
    worst = max(rows[2:], key=lambda r: r["ratio"])
    assert lines[7] == (f"gem / avg: at most {rows[0]['ratio']:.2f}x where the outputs match "
                        "(asv channels_first example)")
    assert lines[8] == (f"fractional_max / max: at most {worst['ratio']:.2f}x where the "
                        f"outputs match (asv channels_first {worst['geometry']})")
    assert len(lines) == 9


def test_plugin_pairs_run_at_each_shape_and_rank():
    from numbapool.bench import CASES, pair_shapes, time_pairs

    assert pair_shapes(CASES[:2]) == [("resnet_stem", (32, 64, 112, 112)),
                                      ("vgg", (32, 128, 56, 56))]
    rows = time_pairs(pairs=[("gem", "avg"), ("fractional_max", "max")],
                      layouts=("channels_last",), rounds=1, repeat=1, out=lambda line: None,
                      shapes=[("one", (2, 3, 9)), ("three", (1, 2, 6, 6, 6))])
    assert [(r["shape"], r["plugin"], r["geometry"]) for r in rows] == [
        ("one", "gem", "example"), ("one", "fractional_max", "example"),
        ("one", "fractional_max", "same out"), ("one", "fractional_max", "same out+k"),
        ("three", "gem", "example"), ("three", "fractional_max", "example"),
        ("three", "fractional_max", "same out"), ("three", "fractional_max", "same out+k")]
    # each rank gets its own examples: max's 3x3/s2/p1 gives 5 outputs of 9 in 1-D and
    # 3x3x3 of 6x6x6 in 3-D, which fractional's second and third rows take as output_size
    assert rows[2]["options"]["output_size"] == (5,)
    assert rows[6]["options"]["output_size"] == (3, 3, 3)
    assert rows[7]["options"]["kernel_size"] == 3
    assert rows[0]["dims"] == (2, 3, 9) and rows[4]["dims"] == (1, 2, 6, 6, 6)


def test_bench_rejects_an_unknown_case(capsys):
    from numbapool.bench import main

    with pytest.raises(SystemExit):
        main(["--plugins", "--case", "resnet_stme"])
    err = capsys.readouterr().err
    assert "'resnet_stme'" in err and "resnet_stem" in err and "all" in err
    with pytest.raises(SystemExit):
        main(["--case", "all"])  # ("all" only with --plugins)
    assert "'all'" in capsys.readouterr().err
