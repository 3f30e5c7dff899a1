"""The `cnn` command: help texts, errors for people, train and export end to end."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cnn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_train_help_shows_defaults_and_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for fragment in (
        "default: fashion-mnist",
        "default: 0",
        "default: runs",
        "examples:",
        "torchrun",
        "lenet5: 15 epochs",
    ):
        assert fragment in text


def test_export_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "cnn export runs/lenet5.pt" in capsys.readouterr().out


def test_missing_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pt not found" in err and "Traceback" not in err


def test_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    assert main(["export", str(bad)]) == 2
    assert "not a readable torch checkpoint" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "export", str(tmp_path / "nope.pt")])


def test_bad_numbers_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "lenet5", "--batch-size", "0"])
    assert info.value.code == 2
    assert "expected a positive integer, received 0" in capsys.readouterr().err


def test_dataset_not_found_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CNN_DATA_DIR", raising=False)
    monkeypatch.setattr("dataio.datasets.DOWNLOAD_TIMEOUT_S", 0.5)
    from dataio import datasets as data

    spec = replace(data.DATASETS["mnist"], mirrors=("http://127.0.0.1:9/",))
    monkeypatch.setitem(data.DATASETS, "mnist", spec)
    code = main(["train", "lenet5", "--dataset", "mnist", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset 'mnist' not found" in err and "--data-dir" in err
    assert err.count("\n") == 1  # one line for people, however long the list of ways


@pytest.mark.slow
def test_console_script_trains_and_exports(tmp_path, fashion_dir):
    """`python -m cnn train` then `cnn export`, as a person would run them."""
    out = tmp_path / "run"
    train = [
        sys.executable,
        "-m",
        "cnn",
        "train",
        "lenet5",
        "--subset",
        "1000",
        "--epochs",
        "1",
        "--data-dir",
        str(fashion_dir),
        "--out",
        str(out),
    ]
    run = subprocess.run(train, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test: loss" in run.stdout and (out / "lenet5.onnx").is_file()
    export = [
        sys.executable,
        "-m",
        "cnn",
        "export",
        str(out / "lenet5.pt"),
        "--out",
        str(tmp_path / "x.onnx"),
        "--data-dir",
        str(fashion_dir),
    ]
    run = subprocess.run(export, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "max |torch - onnxruntime|" in run.stdout and (tmp_path / "x.onnx").is_file()


@pytest.mark.parametrize(
    "command", ["train", "export", "summary", "predict", "compare", "pipeline", "bisect"]
)
def test_every_subcommand_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_not_onnx_and_unsupported_op_for_people(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    (tmp_path / "x.onnx").write_text("hello")
    assert main(["summary", str(tmp_path / "x.onnx")]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 28, 28]) for n in "xy"]
    graph = helper.make_graph([helper.make_node("Bernoulli", ["x"], ["y"])], "g", vi[:1], vi[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, tmp_path / "coin.onnx")
    png = tmp_path / "a.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(png)
    assert main(["predict", str(tmp_path / "coin.onnx"), str(png)]) == 2
    err = capsys.readouterr().err
    assert "Bernoulli" in err and "--backend onnxruntime" in err and err.count("\n") == 1


def test_version_names_the_runtimes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("cnn 0.") and "onnxruntime" in out and "numba" in out


def test_debug_after_the_command_too(tmp_path, capsys):
    missing = str(tmp_path / "nope.onnx")
    with pytest.raises(FileNotFoundError):
        main(["summary", missing, "--debug"])
    with pytest.raises(FileNotFoundError):
        main(["--debug", "summary", missing])
    assert main(["summary", missing]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["summary"],
        ["describe"],
        ["compare", "--backends", "onnxruntime"],
        ["bench", "--gemm-size", "8", "--no-cold-start"],
        ["bisect"],
        ["predict", "photo.png"],
    ],
    ids=lambda a: a[0],
)
def test_a_missing_model_is_worded_one_way(args, tmp_path, capsys):
    missing = tmp_path / "nope.onnx"
    command, rest = args[0], args[1:]
    assert main([command, str(missing), *rest]) == 2
    err = capsys.readouterr().err
    assert err == f"cnn {command}: error: model file {missing} not found\n"


def test_missing_inputs_and_images_are_worded_the_same_way(tmp_path, capsys):
    lenet = str(ROOT / "exported" / "lenet5.onnx")
    npy = tmp_path / "x.npy"
    assert main(["compare", lenet, "--inputs", str(npy), "--backends", "onnxruntime"]) == 2
    assert f"input file or folder {npy} not found" in capsys.readouterr().err
    png = tmp_path / "a.png"
    assert main(["predict", lenet, str(png)]) == 1
    assert f"image file {png} not found" in capsys.readouterr().err
