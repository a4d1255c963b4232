"""npydir.keras.WindowDataset: a Keras 3 PyDataset over Batches, trained with model.fit."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

from npydir import Batches
from npydir.kernel import _windows
from npydir.errors import MissingDependencyError

# Keras picks its backend when first imported: torch (CPU) is what `make test` installs.
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip(
    "keras",
    reason="keras 3 with a backend is not installed: pip install 'npydir[keras]' torch",
    exc_type=ImportError,
)
if not hasattr(keras.utils, "PyDataset"):
    pytest.skip("npydir.keras needs Keras 3", allow_module_level=True)

from npydir.keras import WindowDataset  # noqa: E402

# keras's torch backend calls np.array() on tensors whose __array__ predates numpy 2's copy=
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

def _prefetching() -> int:
    """Copies the dataset's prefetching iterator has queued or running (the kernel's runners
    make local data's batches ahead), plus any copier threads (object storage's path)."""
    threads = sum(t.name.startswith("npydir-batches-") for t in threading.enumerate())
    return _windows.runner_inflight() + threads


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4000, 3)).astype("f4")
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1)
    y = np.eye(3)[labels]  # float64, as DAS's own targets may be
    return x, y


def _same(got: tuple, want: tuple) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, w.astype(np.float32))


# ------------------------------------------------------------------ batches


@pytest.mark.parametrize(
    "kw",
    [
        {"window": 64, "batch_size": 16},
        {"window": 64, "batch_size": 16, "y_window": True, "data_padding": 8},
        {"window": 60, "batch_size": 50, "y_window": True, "output_stride": 4, "stride": 3},
        {"window": 33, "batch_size": 7, "shuffle": False, "first": 100, "last": 3000},
        {"window": 64, "batch_size": 16, "rank": 1, "world_size": 3, "drop_last": True},
    ],
)
def test_batches_equal_batches_in_any_order_of_reads(data, kw):
    x, y = data
    ds = WindowDataset(x, y, seed=4, **kw)
    want = Batches(x, y, seed=4, prefetch=0, **kw)
    n = len(ds)
    assert n == len(want) and ds.num_batches == n
    order = list(range(n)) + [5, 2, n - 1, 0, 1, 2, 3, -1, -n] + list(range(n - 4, n))
    for i in order:
        _same(ds[i], want[i])
    rng = np.random.default_rng(0)
    for i in rng.permutation(n):  # what model.fit(shuffle=True) does
        _same(ds[int(i)], want[int(i)])
    assert _prefetching() == 0  # the stream ended with the epoch's last batch


def test_reads_in_order_are_prefetched_and_others_are_not(data):
    x, y = data
    ds = WindowDataset(x, y, window=64, batch_size=16, seed=1)
    ds[3]
    ds[0]
    assert _prefetching() == 0  # one read: nothing to predict yet
    ds[1]  # the second read in order starts the prefetching iterator
    assert ds._stream is not None
    stream = ds._stream
    for i in range(2, 20):
        ds[i]
    assert ds._stream is stream  # in order: served from the same iterator
    ds[7]  # out of order: the iterator is closed, its threads joined
    assert ds._stream is None and _prefetching() == 0
    ds[8]
    assert ds._stream is not None
    ds.on_epoch_end()
    assert ds._stream is None and _prefetching() == 0


def _on_the_spot(monkeypatch) -> list:
    """Batch indices computed on the spot (not by a prefetching iterator) from now on."""
    made: list = []
    real = Batches.__getitem__

    def counting(self, i):
        made.append(i)
        return real(self, i)

    monkeypatch.setattr(Batches, "__getitem__", counting)
    return made


@pytest.mark.parametrize("shuffle", [True, False])
def test_keras_order_is_prefetched_in_that_order(data, monkeypatch, shuffle):
    """Keras's epoch generator reads a random permutation of the indices (shuffle=True):
    the adapter follows that list, so every read is served by one prefetching iterator,
    and each batch is still batch i."""
    import random

    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    x, y = data
    kw = {"window": 64, "batch_size": 16, "seed": 3, "y_window": True, "data_padding": 4}
    ds = WindowDataset(x, y, **kw)
    n = len(ds)
    want = Batches(x, y, prefetch=0, **kw)
    for epoch in range(2):
        want.set_epoch(epoch)
        expected = [want[i] for i in range(n)]
        made = _on_the_spot(monkeypatch)
        random.seed(epoch)
        order = list(range(n))
        if shuffle:
            random.shuffle(order)
        random.seed(epoch)  # the generator shuffles with the same state
        adapter = PyDatasetAdapter(ds, shuffle=shuffle)
        got = list(adapter._get_iterator())
        monkeypatch.undo()
        assert made == []  # no read computed on the spot: all came from the stream
        assert len(got) == n
        for j, batch in enumerate(got):
            _same(batch, expected[order[j]])
        assert ds._stream is None and _prefetching() == 0  # the stream ended
        ds.on_epoch_end()


def test_a_read_from_elsewhere_between_keras_reads(data):
    """A read that is not the next one of Keras's list closes the stream; Keras's next read
    picks its list up again from there, and every batch is still batch i."""
    import random

    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    x, y = data
    ds = WindowDataset(x, y, window=64, batch_size=16, seed=3)
    want = Batches(x, y, window=64, batch_size=16, seed=3, prefetch=0)
    random.seed(5)
    order = list(range(len(ds)))
    random.shuffle(order)
    random.seed(5)
    gen = PyDatasetAdapter(ds, shuffle=True)._get_iterator()
    _same(next(gen), want[order[0]])
    first = ds._stream
    assert first is not None
    other = order[5]
    _same(ds[other], want[other])  # our own read: served on the spot, the stream closed
    assert ds._stream is None and _prefetching() == 0
    _same(next(gen), want[order[1]])  # Keras again: followed from its position
    assert ds._stream is not None and ds._stream is not first
    for j, batch in enumerate(gen, start=2):
        _same(batch, want[order[j]])
    assert ds._stream is None and _prefetching() == 0


def test_threads_reading_at_once_get_their_own_batches(data):
    x, y = data
    kw = {"window": 64, "batch_size": 16, "seed": 2, "y_window": True, "data_padding": 2}
    ds = WindowDataset(x, y, **kw)
    want = Batches(x, y, prefetch=0, **kw)
    errors: list = []

    def read(offset: int) -> None:
        try:
            for i in range(offset, len(ds), 3):
                _same(ds[i], want[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_on_epoch_end_advances_to_the_next_epoch(data):
    x, y = data
    kw = {"window": 64, "batch_size": 16, "seed": 7}
    ds = WindowDataset(x, y, **kw)
    ref = Batches(x, y, prefetch=0, **kw)
    first = [ds[i] for i in range(3)]
    ds.on_epoch_end()
    assert ds.epoch == 1
    second = [ds[i] for i in range(3)]
    ref.set_epoch(1)
    for i in range(3):
        _same(second[i], ref[i])
    assert not np.array_equal(first[0][0], second[0][0])
    ds.on_epoch_end()
    ds.on_epoch_end()  # nothing read since: no epoch is skipped
    assert ds.epoch == 2
    ds.set_epoch(5)
    ref.set_epoch(5)
    _same(ds[0], ref[0])
    unshuffled = WindowDataset(x, y, shuffle=False, **kw)
    a = unshuffled[0]
    unshuffled.on_epoch_end()
    _same(unshuffled[0], a)  # without shuffle every epoch reads the same


def test_index_errors_name_the_count(data):
    x, y = data
    ds = WindowDataset(x, y, window=64, batch_size=1000)
    with pytest.raises(IndexError, match="out of range for 4 batches"):
        ds[4]
    with pytest.raises(TypeError, match="must be an integer"):
        ds[1.0]


# ------------------------------------------------------------------ DAS: weights, dtypes


@pytest.mark.parametrize("y_window", [False, True])
def test_weights_exactly_when_das_returns_them(data, y_window):
    """das 0.33.2 AudioSequence: (x,) without y; (x, y, weights) with y and
    data_padding > 0, (x, y) otherwise (even with class_weights, which it then drops)."""
    x, y = data
    kw = {"window": 40, "batch_size": 8, "seed": 0, "y_window": y_window}
    assert len(WindowDataset(x, **kw)[0]) == 1
    assert len(WindowDataset(x, y, **kw)[0]) == 2
    ds = WindowDataset(x, y, data_padding=5, **kw)
    xb, yb, wb = ds[0]
    assert wb.dtype == np.float32
    assert wb.shape == ((8, 40) if y_window else (8,))
    if y_window:  # zero margins, as DAS
        assert (wb[:, :5] == 0).all() and (wb[:, -5:] == 0).all() and (wb[:, 5:-5] == 1).all()
    else:  # DAS's weights without y_hist are ones
        assert (wb == 1).all()
    cw = [0.5, 2.0, 3.0]
    with pytest.warns(UserWarning, match="class_weights without data_padding are dropped"):
        plain = WindowDataset(x, y, class_weights=cw, **kw)
    assert len(plain[0]) == 2
    weighted = WindowDataset(x, y, class_weights=cw, data_padding=5, **kw)
    xb, yb, wb = weighted[0]
    pad = np.ones(40, dtype=np.float32)
    pad[:5] = pad[-5:] = 0
    expect = np.asarray(cw, dtype=np.float32)[np.argmax(yb, axis=-1)]
    np.testing.assert_array_equal(wb, expect * pad if y_window else expect)
    # a ready Batches with class weights but no margins: DAS's tuple too, with the warning
    with pytest.warns(UserWarning, match="dropped"):
        wrapped = WindowDataset(Batches(x, y, class_weights=cw, **kw))
    assert len(wrapped[0]) == 2
    with pytest.raises(ValueError, match="class_weights needs y"):  # DAS ignores them
        WindowDataset(x, class_weights=cw, **kw)


def test_float32_by_default_and_stored_dtypes_on_request(data):
    x, y = data
    xi = (x * 1000).astype(np.int16)
    ds = WindowDataset(xi, y, window=32, batch_size=4, seed=0, y_window=True, data_padding=1)
    assert [a.dtype for a in ds[0]] == [np.float32] * 3
    ref = Batches(xi, y, window=32, batch_size=4, seed=0, y_window=True, data_padding=1)
    np.testing.assert_array_equal(ds[0][0], ref[0][0].astype(np.float32))  # unscaled, as DAS
    kept = WindowDataset(xi, y, window=32, batch_size=4, seed=0, dtype=None)
    assert [a.dtype for a in kept[0]] == [np.int16, np.float64]
    scaled = WindowDataset(xi, window=32, batch_size=4, seed=0, scale=1 / 32768)
    np.testing.assert_allclose(scaled[0][0], ref[0][0] / 32768, rtol=1e-6)


# ------------------------------------------------------------------ arguments


def test_signature_shows_every_batches_parameter():
    own = inspect.signature(WindowDataset).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values())
    for name, p in inspect.signature(Batches).parameters.items():
        assert name in own, name
        if name == "window":  # optional only with a Batches as x
            assert own[name].default is None
        elif name == "dtype":  # float32 as das 0.33
            assert own[name].default == "float32"
        else:
            assert own[name].default == p.default, name
            assert own[name].annotation == p.annotation, name


def test_a_ready_batches_takes_no_other_arguments(data):
    x, y = data
    b = Batches(x, y, window=16, batch_size=4, seed=1)
    ds = WindowDataset(b)
    _same(ds[0], b[0])
    with pytest.raises(TypeError, match="takes no other Batches arguments, got y, stride"):
        WindowDataset(b, y, stride=2)
    with pytest.raises(TypeError, match="window is required"):
        WindowDataset(x, y)


@pytest.mark.parametrize("kw", [{"workers": 2}, {"use_multiprocessing": True}])
def test_keras_workers_are_refused_with_the_reason(data, kw):
    x, y = data
    with pytest.raises(ValueError, match=r"npydir makes the batches in the background"):
        WindowDataset(x, y, window=16, **kw)
    ds = WindowDataset(x, y, window=16)
    assert ds.workers == 1 and ds.use_multiprocessing is False


# ------------------------------------------------------------------ training


def _das_like_model(window: int, channels: int, classes: int):
    """Conv1D layers on [batch, window, channels], a per-sample softmax, as DAS's TCN."""
    inp = keras.Input((window, channels))
    h = keras.layers.Conv1D(16, 5, padding="same", activation="relu")(inp)
    h = keras.layers.Conv1D(16, 5, padding="same", dilation_rate=2, activation="relu")(h)
    out = keras.layers.Conv1D(classes, 1, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    return model


@pytest.mark.parametrize("shuffle", [True, False])
def test_model_fit_trains_a_das_like_model(data, shuffle):
    x, y = data
    kw = {"window": 64, "batch_size": 64, "stride": 2, "y_window": True, "data_padding": 8}
    train = WindowDataset(x[:3000], y[:3000], seed=0, **kw)  # 23 batches
    val = WindowDataset(x[3000:], y[3000:], shuffle=False, **kw)  # 8 batches
    keras.utils.set_random_seed(0)
    model = _das_like_model(64, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "ran out of data"
        history = model.fit(train, validation_data=val, epochs=2, verbose=0, shuffle=shuffle)
    loss, val_loss = history.history["loss"], history.history["val_loss"]
    assert len(loss) == len(val_loss) == 2
    assert loss[1] < loss[0] and val_loss[1] < val_loss[0]
    assert train.epoch >= 2  # each epoch drew a new order
    test = WindowDataset(x[3000:], window=64, batch_size=64, stride=8, shuffle=False)
    pred = model.predict(test, verbose=0)
    assert pred.shape == (len(range(0, 1000 - 64 + 1, 8)), 64, 3)
    assert _prefetching() == 0


# ------------------------------------------------------------------ imports


def test_import_npydir_does_not_import_keras():
    code = "import sys, npydir; assert 'keras' not in sys.modules, 'keras imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_keras_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # makes `import keras` fail
    monkeypatch.delitem(sys.modules, "npydir.keras")
    monkeypatch.delitem(sys.modules, "npydir.loader.keras", raising=False)
    with pytest.raises(MissingDependencyError, match=r'pip install "npydir\[keras\]"'):
        importlib.import_module("npydir.keras")


def test_a_missing_keras_backend_is_named():
    backend = "tensorflow"
    if importlib.util.find_spec(backend) is not None:
        pytest.skip("tensorflow is installed: no backend is missing")
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-c", "import npydir.keras"], env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "MissingDependencyError" in proc.stderr and "KERAS_BACKEND" in proc.stderr


def test_the_readme_keras_loop_runs(tmp_path, monkeypatch):
    from _readme import python_block, small_das_store

    code = python_block("### Keras, as DAS trains")
    assert "epochs=10" in code
    small_das_store(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("epochs=10", "epochs=1"), "README.md", "exec"), namespace)
    x, y, w = namespace["x"], namespace["y"], namespace["w"]
    assert x.dtype == y.dtype == w.dtype == np.float32
    assert x.shape == (32, 4096, 2) and y.shape == (32, 4096, 3) and w.shape == (32, 4096)
    assert namespace["model"].output_shape == (None, 4096, 3)
