"""cnn/shapes.py, the one input-shape resolver, and the commands that use it on models
shaped as users bring them (issue 25 items 1, 4, 5, 6): a batch written as -1,
``?`` and unnamed dimensions, unknown --dim names, the resolved shape printed."""

from __future__ import annotations

import numpy as np
import pytest
from wild_models import named_square, paddle_classifier, paddle_detector, unnamed_dims, upsampler

from cnn import shapes
from cnn.bisect import bisect_backends
from cnn.cli import main


@pytest.fixture
def detector(tmp_path):
    path = tmp_path / "det.onnx"
    path.write_bytes(paddle_detector())
    return path


def test_minus_one_and_question_marks_are_symbolic():
    (spec,) = shapes.model_inputs(paddle_detector())
    assert spec.dims == (None, 3, None, None)
    assert [shapes.normalize_dim(d) for d in (-1, "?", "", "N", 0, 7)] == [
        None,
        None,
        None,
        "N",
        0,
        7,
    ]


def test_shape_sizes_every_axis_and_the_batch():
    inputs = shapes.model_inputs(paddle_detector())
    r = shapes.resolve(inputs, shape=[1, 3, 48, 192])
    assert r.concrete() == {"x": (1, 3, 48, 192)}
    assert r.line() == "x [1, 3, 48, 192] (from --shape)"
    with pytest.raises(ValueError, match="fixes axis 1 at 3, received 4"):
        shapes.resolve(inputs, shape=[1, 4, 48, 192])
    with pytest.raises(ValueError, match="has 4 dims"):
        shapes.resolve(inputs, shape=[1, 3, 48])


def test_unnamed_dims_need_the_shape():
    inputs = shapes.model_inputs(paddle_detector())
    with pytest.raises(ValueError) as err:
        shapes.resolve(inputs, batch=1)
    assert "axis 2 (unnamed), axis 3 (unnamed)" in str(err.value)
    assert "give the shape with --shape" in str(err.value)
    (spec,) = shapes.model_inputs(unnamed_dims())
    assert spec.dims == (None, 3, None)
    assert shapes.resolve([spec], shape=[2, 3, 5]).concrete() == {"x": (2, 3, 5)}


def test_named_dims_and_the_batch():
    inputs = shapes.model_inputs(named_square())
    r = shapes.resolve(inputs, {"size": 32}, batch=2)
    assert r.concrete() == {"images": (2, 3, 32, 32)}
    assert r.line() == "images [2, 3, 32, 32] (axis 0 the batch, 2; size=32 from --dim)"
    open_batch = shapes.resolve(inputs, {"size": 8})
    assert open_batch["images"] == [None, 3, 8, 8]
    assert open_batch.line().startswith("images [batch, 3, 8, 8]")
    with pytest.raises(ValueError, match="the batch has no size"):
        open_batch.concrete()
    fixed = shapes.resolve(inputs, {"size": 8, "batch": 4}, batch=1)
    assert fixed.concrete() == {"images": (4, 3, 8, 8)}  # --dim on the first axis wins
    with pytest.raises(ValueError, match=r"size \(axis 2\), size \(axis 3\).*--dim size=SIZE"):
        shapes.resolve(inputs)
    assumed = shapes.resolve(inputs, batch=1, assume=224)
    assert assumed.concrete() == {"images": (1, 3, 224, 224)}
    assert "assumed 224 for size" in assumed.line()


def test_unknown_dim_names_are_refused_listing_the_models():
    inputs = shapes.model_inputs(named_square())
    with pytest.raises(ValueError) as err:
        shapes.resolve(inputs, {"szie": 32})
    text = str(err.value)
    assert "no dimension named 'szie'" in text and "its symbolic dimensions are batch, size" in text
    with pytest.raises(ValueError, match="has no named symbolic dimension; unnamed ones take"):
        shapes.resolve(shapes.model_inputs(paddle_detector()), {"height": 32})
    with pytest.raises(ValueError, match="not both"):
        shapes.resolve(inputs, {"size": 3}, [1, 3, 3, 3])
    with pytest.raises(ValueError, match="expected NAME=SIZE"):
        shapes.parse_dims(["size"])


def test_describe_refuses_a_typo_and_prints_the_shape(tmp_path, capsys):
    path = tmp_path / "sq.onnx"
    path.write_bytes(named_square())
    assert main(["describe", str(path), "--dim", "szie=16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no dimension named 'szie'" in err and "batch, size" in err
    assert err.startswith("cnn describe: error: --dim szie=16:")  # the option's dashes kept
    assert main(["describe", str(path), "--dim", "size=16"]) == 0
    captured = capsys.readouterr()
    assert "cnn describe: input shape: images [1, 3, 16, 16]" in captured.err
    assert "Conv" in captured.out


def test_describe_a_minus_one_batch_with_shape(detector, capsys):
    assert main(["describe", str(detector)]) == 2
    assert "--shape" in capsys.readouterr().err
    assert main(["describe", str(detector), "--shape", "1,3,8,12"]) == 0
    assert "input shape: x [1, 3, 8, 12] (from --shape)" in capsys.readouterr().err


def test_bench_without_sizes_is_one_clear_line(detector, capsys):
    args = ["bench", str(detector), "--gemm-size", "32", "--no-cold-start", "--no-single-thread"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "symbolic dimensions without a size" in err and "--shape" in err


def test_bisect_sizes_the_input_and_hides_constants(detector, capsys):
    report = bisect_backends(detector, dims=None, shape=[1, 3, 8, 10])
    assert report.first_bad is None and report.shapes == "x [1, 3, 8, 10] (from --shape)"
    constants = [d.op_type for d in report.nodes if d.constant]
    assert constants == ["Constant"] * 4 + ["Reshape"]
    assert [d.op_type for d in report.shown()] == ["Conv", "Relu", "MaxPool", "Conv", "Sigmoid"]
    pool = next(d for d in report.nodes if d.op_type == "MaxPool")
    assert pool.shape == (1, 8, 4, 5)
    assert main(["bisect", str(detector), "--shape", "2,3,8,10"]) == 0
    captured = capsys.readouterr()
    assert "cnn bisect: input shape: x [2, 3, 8, 10]" in captured.err
    assert "Constant" not in captured.out and "5 constant-producing node outputs" in captured.out
    assert main(["bisect", str(detector), "--shape", "2,3,8,10", "--all"]) == 0
    assert captured.out.count("\n") + 4 == capsys.readouterr().out.count("\n")


def test_bisect_without_sizes_refuses_rather_than_guess(tmp_path, capsys):
    path = tmp_path / "cls.onnx"
    path.write_bytes(paddle_classifier())
    assert main(["bisect", str(path)]) == 2
    assert "symbolic dimensions without a size" in capsys.readouterr().err
    report = bisect_backends(path, shape=[1, 3, 6, 6])
    assert report.first_bad is None
    assert np.isfinite([d.max_abs_diff for d in report.nodes]).all()


def test_compare_plans_a_minus_one_batch(detector, capsys):
    from cnn.compare import plan_inputs

    plan = plan_inputs(detector, [1, 4], shape=[1, 3, 8, 8], log=lambda line: None)
    assert plan.batch_sizes == (1,) and plan.samples.batch(0, 1)["x"].shape == (1, 3, 8, 8)
    assert plan.shapes == "x [1, 3, 8, 8] (from --shape)"
    with pytest.raises(ValueError, match="axis 2 \\(unnamed\\)"):
        plan_inputs(detector, [1, 4], log=lambda line: None)
    with pytest.raises(ValueError, match="no dimension named 'H'"):
        plan_inputs(detector, [1, 4], dims={"H": 8}, log=lambda line: None)


def test_compare_a_minus_one_batch_end_to_end(detector, capsys):
    args = ["compare", str(detector), "--shape", "2,3,8,8", "--backends", "onnxruntime,numba"]
    assert main([*args, "--rounds", "3", "--max-seconds", "1"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "cnn compare: input shape: x [2, 3, 8, 8] (from --shape)" in captured.err
    table = [line.split("│")[1].strip() for line in captured.out.splitlines() if line[:1] == "│"]
    assert table == ["onnxruntime", "numba"]


def test_bisect_a_model_with_external_data(tmp_path, capsys):
    import onnx

    path = tmp_path / "up.onnx"
    onnx.save_model(
        upsampler(), path, save_as_external_data=True, location="up.onnx.data", size_threshold=0
    )
    assert (tmp_path / "up.onnx.data").is_file()
    assert main(["bisect", str(path), "--dim", "H=6", "--dim", "W=5"]) == 0
    assert "agree on all 2 node outputs" in capsys.readouterr().out


def test_random_feeds_follow_each_inputs_dtype_and_the_seed():
    """The one random-input generator: each input's own dtype (float, int64, bool,
    uint8), the resolver's shapes, the same arrays for the same seed."""
    specs = [
        shapes.InputSpec("x", np.dtype(np.float32), ("N", 3)),
        shapes.InputSpec("h", np.dtype(np.float16), ("N", 2)),
        shapes.InputSpec("ids", np.dtype(np.int64), ("N", 5)),
        shapes.InputSpec("mask", np.dtype(bool), ("N", 5)),
        shapes.InputSpec("px", np.dtype(np.uint8), ("N", 4)),
    ]
    sizes = shapes.resolve(specs, {"N": 2}).concrete()
    feeds = shapes.random_feeds(specs, sizes, seed=3)
    assert {k: (v.shape, v.dtype.name) for k, v in feeds.items()} == {
        "x": ((2, 3), "float32"),
        "h": ((2, 2), "float16"),
        "ids": ((2, 5), "int64"),
        "mask": ((2, 5), "bool"),
        "px": ((2, 4), "uint8"),
    }
    assert feeds["x"].min() >= 0 and feeds["x"].max() < 1 and np.unique(feeds["x"]).size == 6
    assert set(np.unique(feeds["ids"])) <= {0, 1, 2, 3}
    again = shapes.random_feeds(specs, sizes, seed=3)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    other = shapes.random_feeds(specs, sizes, seed=4)
    assert not np.array_equal(feeds["x"], other["x"])
    text = shapes.InputSpec("s", np.dtype(object), (1,))
    with pytest.raises(ValueError, match="input 's' is object: expected a float"):
        shapes.random_feeds([text], {"s": (1,)})


def test_every_command_draws_its_random_inputs_from_one_generator():
    """compare, bench, profile, bisect, describe and summary feed random data made by
    cnn/shapes.py's random_feeds: no module draws random inputs of its own."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "cnn"
    makers = {"random", "integers", "standard_normal", "normal", "uniform", "rand", "randn"}
    for path in sorted(root.glob("*.py")):
        if path.name in ("shapes.py", "zoo.py"):  # the generator; zoo.py: weights
            continue
        tree = ast.parse(path.read_text())
        calls = [
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in makers
        ]
        if path.name == "bench.py":  # the GEMM roof's matrices, not a model's inputs
            assert calls == ["random", "random"], calls
        else:
            assert not calls, f"{path.name} draws random data itself: {calls}"
