"""cnn/distributed.py: ``cnn predict --ray`` and the Predictor for ``ds.map_batches``.

The Ray tests start a cluster with ``ray start --head`` on 127.0.0.1 (2 CPUs, a small
object store, no dashboard) once for the module and stop it at the end, and run on it
by its address; one runs without an address, on the local instance it starts. Each run
maps 200 generated PNGs (three of them corrupt) or some of them through LeNet-5 and
checks the result against the single-machine ``cnn predict``, row for row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "exported" / "lenet5.onnx"
CORRUPT = {3: b"not a png", 50: b"", 120: None}  # None: a PNG cut in half
N_IMAGES = 200


def _write_images(folder: Path, n: int = N_IMAGES) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(26)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:04d}.png"
        pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        if i in CORRUPT:
            data = CORRUPT[i]
            path.write_bytes(path.read_bytes()[:40] if data is None else data)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray") / "images"
    _write_images(folder)
    return folder


@pytest.fixture(scope="module")
def single(images, tmp_path_factory) -> str:
    """The single-machine ``cnn predict --csv`` of the folder."""
    out = tmp_path_factory.mktemp("single") / "single.csv"
    assert main(["predict", str(LENET), str(images), "--out", str(out)]) == 1  # 3 bad files
    return out.read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _driver_outside_the_checkout(tmp_path, monkeypatch):
    """Ray's workers put the driver's working directory first on their path: a driver in
    the checkout would have them import its source tree (and fill a numba cache there),
    not the package under test."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray cluster of one node, ``ray start --head --block`` on 127.0.0.1 (2 CPUs, a
    small object store, no dashboard), stopped at the end by ending the process group
    it runs in. Yields (address, marker): the kill hook is armed for every worker of the
    cluster, but its marker file exists, which disarms it; a test removes it to arm it."""
    pytest.importorskip("ray")
    from cnn.distributed import KILL_HOOK_ENV

    folder = tmp_path_factory.mktemp("cluster")
    marker = folder / "killed"
    marker.touch()
    port = _free_port()
    # No token authentication on this 127.0.0.1-only cluster: its token would be the
    # user's ~/.ray/auth_token, which other Ray instances of this user may replace.
    env = {**os.environ, KILL_HOOK_ENV: f"2:{marker}", "RAY_AUTH_MODE": "disabled"}
    log = open(folder / "ray.log", "wb")  # noqa: SIM115 (open while the cluster runs)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"),
            *("--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2"),
            *("--object-store-memory", str(80 * 2**20), "--include-dashboard", "false"),
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the teardown ends all of it
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (folder / "ray.log").read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ray start: nothing listens on {address}") from None
                time.sleep(0.5)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_MODE", "disabled")  # the drivers that connect to it
            yield address, marker
    finally:
        # SIGTERM to the whole group, as `ray stop` does to each process (ending `ray
        # start --block` alone waits on the node for half a minute), then SIGKILL.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
                break
        log.close()


def _bad_names(images: Path) -> list[str]:
    return [str(images / f"img_{i:04d}.png") for i in sorted(CORRUPT)]


@pytest.mark.slow
def test_ray_output_equals_single_machine_row_for_row(cluster, images, single, tmp_path, capsys):
    address, _ = cluster
    out = tmp_path / "ray.csv"
    capsys.readouterr()
    code = main(
        ["predict", str(LENET), str(images), "--ray", address, "--workers", "2", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 1  # some files failed, as on one machine
    assert out.read_text() == single
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == N_IMAGES - len(CORRUPT)
    for name in _bad_names(images):
        assert f"cnn predict: error: {name}:" in err
    assert "2 workers x 1 threads" in err
    assert not list(tmp_path.glob(".ray.csv*"))  # the temp file was renamed


@pytest.mark.slow
def test_killed_worker_loses_nothing(cluster, images, single, tmp_path):
    from cnn.distributed import predict

    address, marker = cluster
    marker.unlink()  # arm the hook: the first worker to reach its 3rd batch dies
    errors: list[str] = []
    out = tmp_path / "ray.csv"
    summary = predict(
        LENET,
        images,
        ray_address=address,
        workers=2,
        batch_size=16,
        output=out,
        on_error=errors.append,
        on_note=lambda line: None,
    )
    assert marker.exists(), "no worker was killed: the hook did not fire"
    assert out.read_text() == single
    assert errors == [f"{n}: not an image Pillow can read" for n in _bad_names(images)]
    assert summary.predictions == N_IMAGES - len(CORRUPT)


@pytest.mark.slow
def test_parquet_of_image_bytes_to_parquet(images, single, tmp_path):
    """A Parquet file of names and encoded bytes in, Parquet out: the values of the CSV;
    no address, so predict starts a local Ray instance of its own and stops it."""
    ray = pytest.importorskip("ray")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cnn.distributed import predict

    files = sorted(images.iterdir())[:60]
    source = tmp_path / "images.parquet"
    names = [f"archive/{p.name}" for p in files]
    pq.write_table(pa.table({"path": names, "bytes": [p.read_bytes() for p in files]}), source)
    out = tmp_path / "predictions.parquet"
    errors: list[str] = []
    summary = predict(
        LENET, source, workers=1, top_k=2, output=out, on_error=errors.append, on_note=print
    )
    table = pq.read_table(out)
    assert table.column_names == [
        "image",
        "label_1",
        "index_1",
        "probability_1",
        "label_2",
        "index_2",
        "probability_2",
    ]
    expected = {Path(r["image"]).name: r for r in csv.DictReader(io.StringIO(single))}
    got = table.to_pylist()
    bad = {f"archive/img_{i:04d}.png" for i in CORRUPT if i < 60}
    assert [r["image"] for r in got] == [n for n in names if n not in bad]
    for row in got:
        want = expected[Path(row["image"]).name]
        for r in (1, 2):
            assert row[f"label_{r}"] == want[f"label_{r}"]
            assert row[f"index_{r}"] == int(want[f"index_{r}"])
            assert f"{row[f'probability_{r}']:.6g}" == want[f"probability_{r}"]
    assert sorted(e.partition(":")[0] for e in errors) == sorted(bad)
    assert summary.images == 60
    assert 0 < summary.busy_s < summary.seconds  # one worker: busy for part of the run
    assert not ray.is_initialized()  # the instance it started is stopped


def test_predictor_holds_one_session_and_reports_bad_rows(images):
    """The map_batches class without Ray: made once, called per batch; a bad file is a
    row with its error; bytes and paths give the same rows."""
    from cnn.distributed import Predictor, columns

    predictor = Predictor(str(LENET), backend="onnxruntime", threads=1, top_k=2)
    session = predictor.session
    paths = sorted(images.iterdir())[:6]  # img_0003 is corrupt
    by_path = predictor({"path": np.array([str(p) for p in paths], dtype=object)})
    by_bytes = predictor(
        {
            "path": np.array([str(p) for p in paths], dtype=object),
            "bytes": np.array([p.read_bytes() for p in paths], dtype=object),
        }
    )
    assert predictor.session is session
    assert list(by_path) == columns(2)
    for column in columns(2):
        np.testing.assert_array_equal(by_path[column], by_bytes[column])
    assert by_path["error"][3] == f"{paths[3]}: not an image Pillow can read"
    assert by_path["index_1"][3] == -1 and np.isnan(by_path["probability_1"][3])
    assert all(e == "" for i, e in enumerate(by_path["error"]) if i != 3)
    assert (by_path["index_1"][[0, 1, 2, 4, 5]] >= 0).all()
    assert (by_path["probability_1"] >= by_path["probability_2"])[[0, 1, 2, 4, 5]].all()


def test_ray_missing_says_how_to_install(monkeypatch, images, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = main(["predict", str(LENET), str(images), "--ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "cnn predict: error: Ray Data is not installed (--ray needs it): "
        "pip install 'cnn-pipeline[ray]' (in a clone: pip install '.[ray]')"
    )


def test_parquet_out_needs_ray(images, tmp_path, capsys):
    code = main(["predict", str(LENET), str(images), "--out", str(tmp_path / "p.parquet")])
    assert code == 2
    assert "expected a .csv or .json file" in capsys.readouterr().err


def test_json_output_of_the_writer_round_trips(images):
    """Predictor rows back into cnn predict's JSON: the same structure as one machine."""
    from cnn import predict as P
    from cnn.distributed import Predictor, _prediction

    predictor = Predictor(str(LENET), backend="onnxruntime", threads=1, top_k=3)
    paths = [str(p) for p in sorted(images.iterdir())[:2]]
    rows = predictor({"path": np.array(paths, dtype=object)})
    stream = io.StringIO()
    writer = P.Writer(stream, "json", 3)
    for i in range(2):
        writer.write(_prediction({c: rows[c][i] for c in rows}, 3))
    writer.close()
    data = json.loads(stream.getvalue())
    assert [d["image"] for d in data] == paths
    assert all(len(d["predictions"]) == 3 for d in data)


@pytest.mark.slow
def test_missing_files_keep_their_place(cluster, images, tmp_path, capsys):
    """A file that is not there is an error line in its place, as on one machine; with
    nothing to read, Ray reads nothing and the output is the header alone."""
    from cnn.distributed import predict

    address, _ = cluster
    files = [str(images / "img_0000.png"), str(tmp_path / "gone.png"), str(images / "img_0001.png")]
    one = tmp_path / "one.csv"
    assert main(["predict", str(LENET), *files, "--out", str(one)]) == 1
    single_err = capsys.readouterr().err
    errors: list[str] = []
    out = tmp_path / "ray.csv"
    predict(
        LENET,
        files,
        ray_address=address,
        output=out,
        on_error=errors.append,
        on_note=lambda line: None,
    )
    assert out.read_text() == one.read_text()
    assert errors == [f"image file {tmp_path / 'gone.png'} not found"]
    assert f"cnn predict: error: {errors[0]}" in single_err

    errors.clear()
    summary = predict(
        LENET,
        [str(tmp_path / "gone.png")],
        ray_address=address,
        output=out,
        on_error=errors.append,
        on_note=lambda line: None,
    )
    assert out.read_text().splitlines() == [one.read_text().splitlines()[0]]  # the header
    assert len(errors) == 1 and summary.predictions == 0


@pytest.mark.slow
def test_predictor_in_a_users_own_pipeline(cluster, images, single):
    """docs/ray.md's lines: the user's own read and map_batches; the session's threads
    are the CPUs Ray gives the worker."""
    import ray

    from cnn.distributed import Predictor

    address, _ = cluster
    files = [str(p) for p in sorted(images.iterdir())[:40]]
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        # columns path, bytes; reading holds no CPU (the workers may hold them all)
        ds = ray.data.read_binary_files(files, include_paths=True, num_cpus=0)
        rows = ds.map_batches(
            Predictor,
            fn_constructor_kwargs={"model": str(LENET), "top_k": 3},
            batch_size=16,
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=2,
        ).take_all()
        threads = ray.get(
            ray.remote(num_cpus=2)(lambda: Predictor(str(LENET), backend="onnxruntime").threads)
            .remote()
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert threads == 2
    expected = {r["image"]: r for r in csv.DictReader(io.StringIO(single))}
    assert sorted(r["image"] for r in rows) == files
    for row in rows:
        if row["error"]:
            assert row["image"] not in expected and "not an image" in row["error"]
            continue
        want = expected[row["image"]]
        for r in (1, 2, 3):
            assert row[f"label_{r}"] == want[f"label_{r}"]
            assert row[f"index_{r}"] == int(want[f"index_{r}"])
            assert f"{row[f'probability_{r}']:.6g}" == want[f"probability_{r}"]
    assert sum(1 for r in rows if r["error"]) == 1  # img_0003
