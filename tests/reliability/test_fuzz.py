"""Hostile input, generated: whatever bytes, JSON or YAML arrive, only ``ArchcompressError`` comes out.

Every reader of user-supplied or on-disk data (candidates, configs, teacher checkpoints, saved students, the
result store) is fed random values; the property is that it either works or raises our one exception type
(which the CLI turns into a one-line message and exit code 2), never a bare ``KeyError``/``TypeError``/... .
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from archcompress.checkpoint import TeacherMeta, load_teacher, save_teacher
from archcompress.config import CompressConfig
from archcompress.errors import ArchcompressError
from archcompress.evaluate.store import ResultKey, ResultStore, StoredResult
from archcompress.models import create_model
from archcompress.space import Candidate, CompressionSpace, load_student, save_student

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any JSON document: what a hand-edited or damaged candidate file, store row or arch.json may hold.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)  # Python ints beyond float range
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
CANDIDATE_KEYS = ("keep", "ratios", "kernel_ratios", "version")


@pytest.fixture(scope="module")
def spaces() -> list[CompressionSpace]:
    """A plain chain (VGG-11), a residual network (ResNet-20) and a 1-D CNN; untrained, tracing is all we need."""
    return [
        CompressionSpace.from_model(create_model("vgg11", (1, 8, 8), 10, {"width": 0.125}), (1, 8, 8)),
        CompressionSpace.from_model(create_model("resnet20", (3, 8, 8), 10, {"width": 0.25}), (3, 8, 8)),
        CompressionSpace.from_model(create_model("cnn1d", (1, 40), 10), (1, 40)),
    ]


@st.composite
def candidate_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly the right keys with wrong values, plus stray keys; lists of random lengths and element types."""
    numbers = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 1.5, -0.5, 10**400]) | st.floats() | st.integers()
    entry = st.booleans() | numbers | json_scalars
    near = st.lists(entry, max_size=24) | st.lists(numbers, max_size=24) | st.lists(st.booleans(), max_size=24)
    keys = draw(st.lists(st.sampled_from(CANDIDATE_KEYS) | st.text(max_size=6), max_size=6, unique=True))
    return {key: draw(near | json_values) for key in keys}


def exercise_candidate(candidate: Candidate, spaces: list[CompressionSpace]) -> None:
    """Everything a search or the store does with a parsed candidate: works, or raises our error."""
    for space in spaces:
        try:
            reason = space.check(candidate)
        except ArchcompressError:  # e.g. made for another space: wrong lengths
            continue
        try:
            space.canonical(candidate)
            space.candidate_hash(candidate)
            cost = space.cost(candidate)
        except ArchcompressError:
            assert reason is not None  # a candidate that check() accepts must also resolve
            continue
        assert reason is None and cost.params > 0


@FUZZ
@given(data=candidate_dicts() | json_values)
@example(data={"keep": [], "ratios": [10**400]})  # float() of an int beyond float range: OverflowError
@example(data=[True, 0.5])
def test_random_candidate_dicts_raise_only_our_error(data: Any, spaces: list[CompressionSpace]) -> None:
    try:
        candidate = Candidate.from_dict(data)
    except ArchcompressError:
        return
    exercise_candidate(candidate, spaces)


@FUZZ
@given(document=json_values, garbage=st.text(max_size=40))
def test_random_candidate_json_text_raises_only_our_error(
    document: Any, garbage: str, spaces: list[CompressionSpace]
) -> None:
    for text in (json.dumps(document), garbage, json.dumps(document)[: len(garbage)]):
        try:
            candidate = Candidate.from_json(text)
        except ArchcompressError:
            continue
        exercise_candidate(candidate, spaces)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_candidates_of_the_right_shape_with_any_numbers(data: st.DataObject, spaces: list[CompressionSpace]) -> None:
    """The right lengths for one of the spaces, any flags and any numbers: valid or a clear refusal."""
    space = data.draw(st.sampled_from(spaces))
    numbers = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e-9, 1e-3, 0.05, 0.999, 1.0])
    keep = data.draw(st.lists(st.booleans(), min_size=len(space.removable_units), max_size=len(space.removable_units)))
    ratios = data.draw(st.lists(numbers, min_size=len(space.shrink_groups), max_size=len(space.shrink_groups)))
    kernels = data.draw(st.lists(numbers, min_size=len(space.kernel_units), max_size=len(space.kernel_units)))
    try:
        candidate = Candidate.from_dict({"keep": keep, "ratios": ratios, "kernel_ratios": kernels})
    except ArchcompressError:
        assert not all(math.isfinite(r) for r in (*ratios, *kernels))
        return
    exercise_candidate(candidate, [space])


def test_huge_ratios_are_invalid_not_an_overflow(spaces: list[CompressionSpace]) -> None:
    """Found by the property above: a finite ratio like 3.5e305 overflowed the channel count in canonical()."""
    for space in spaces:
        keep = [True] * len(space.removable_units)
        candidate = Candidate(keep, [1e308] * len(space.shrink_groups), [1.0] * len(space.kernel_units))
        assert space.check(candidate) is not None
        with pytest.raises(ArchcompressError):
            space.candidate_hash(candidate)


# --- config.yaml ---------------------------------------------------------------------------------------------

CONFIG_FIELDS = [f.name for f in dataclasses.fields(CompressConfig)]
NESTED_FIELDS = {"candidate", "n2n", "space", "data", "embedding"}
yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def config_documents(draw: st.DrawFn) -> Any:
    """A config mapping with real and stray keys, real nested sections filled with random settings."""
    real = yaml.safe_load(CompressConfig(teacher="t.pt", out="run").to_yaml())
    keys = draw(st.lists(st.sampled_from(CONFIG_FIELDS) | st.text(max_size=6) | st.integers(), max_size=8))
    document: dict[Any, Any] = {}
    for key in keys:
        if key in NESTED_FIELDS and draw(st.booleans()):
            section = real[key]
            names = draw(st.lists(st.sampled_from(sorted(section)) | st.text(max_size=5), max_size=4))
            document[key] = {name: draw(yaml_values) for name in names}
        else:
            document[key] = draw(yaml_values)
    return draw(st.just(document) | yaml_values)


def read_config(path: Path) -> None:
    """What ``compress --config`` / ``--resume`` do with the file."""
    try:
        config = CompressConfig.from_yaml(path)
        config.validate()
    except ArchcompressError as exc:
        assert str(exc).strip()


@FUZZ
@given(document=config_documents())
def test_random_yaml_configs_raise_only_our_error(document: Any, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    read_config(path)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_as_a_config_raise_only_our_error(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(raw)
    read_config(path)


@FUZZ
@given(cut=st.integers(0, 10_000), flip=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_damaged_real_configs_raise_only_our_error(cut: int, flip: int, byte: int, tmp_path: Path) -> None:
    real = CompressConfig(teacher="t.pt", out="run", target=10.0).to_yaml().encode()
    damaged = bytearray(real[: cut % (len(real) + 1)])
    if damaged:
        damaged[flip % len(damaged)] = byte
    path = tmp_path / "config.yaml"
    path.write_bytes(bytes(damaged))
    read_config(path)


# --- teacher checkpoints and saved students ------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The bytes of a real (untrained) teacher checkpoint and of a saved student's two files."""
    folder = tmp_path_factory.mktemp("real")
    model = create_model("lenet5", (1, 8, 8), 10)
    save_teacher(folder / "teacher.pt", model, TeacherMeta("lenet5", {}, (1, 8, 8), 10, "digits"))
    space = CompressionSpace.from_model(model, (1, 8, 8))
    save_student(space.build(space.uniform_candidate(0.5)), folder / "student")
    return {
        "teacher.pt": (folder / "teacher.pt").read_bytes(),
        "arch.json": (folder / "student" / "arch.json").read_bytes(),
        "model.pt": (folder / "student" / "model.pt").read_bytes(),
    }


def damaged(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    """``data`` truncated to ``cut`` bytes (modulo its length) with some bytes overwritten."""
    out = bytearray(data[: cut % (len(data) + 1)])
    for position, value in flips:
        if out:
            out[position % len(out)] = value
    return bytes(out)


damage = st.tuples(st.integers(0, 10**6), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
random_or_damaged = st.binary(max_size=300).map(lambda b: ("random", b)) | damage.map(lambda d: ("damaged", d))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@FUZZ
@given(choice=random_or_damaged)
def test_random_or_damaged_teacher_checkpoints_raise_only_our_error(
    choice: tuple[str, Any], real_files: dict[str, bytes], tmp_path: Path
) -> None:
    kind, value = choice
    data = value if kind == "random" else damaged(real_files["teacher.pt"], *value)
    path = tmp_path / "teacher.pt"
    path.write_bytes(data)
    try:
        teacher = load_teacher(path)
    except ArchcompressError:
        return
    assert data == real_files["teacher.pt"] or kind == "damaged"  # a flip inside a weight can still load
    assert teacher.meta.num_classes == 10


def write_student(folder: Path, arch: bytes, weights: bytes, *, fix_hash: bool) -> None:
    """A student folder; ``fix_hash`` rewrites arch.json's weight hash so that the weights themselves get read."""
    folder.mkdir(exist_ok=True)
    if fix_hash:
        try:
            document = json.loads(arch)
            document["weights_sha256"] = hashlib.sha256(weights).hexdigest()
            arch = json.dumps(document).encode()
        except (ValueError, TypeError):
            pass
    (folder / "arch.json").write_bytes(arch)
    (folder / "model.pt").write_bytes(weights)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@FUZZ
@given(arch=random_or_damaged, weights=random_or_damaged, fix_hash=st.booleans())
def test_random_or_damaged_students_raise_only_our_error(
    arch: tuple[str, Any], weights: tuple[str, Any], fix_hash: bool, real_files: dict[str, bytes], tmp_path: Path
) -> None:
    arch_bytes = arch[1] if arch[0] == "random" else damaged(real_files["arch.json"], *arch[1])
    weight_bytes = weights[1] if weights[0] == "random" else damaged(real_files["model.pt"], *weights[1])
    write_student(tmp_path / "student", arch_bytes, weight_bytes, fix_hash=fix_hash)
    try:
        student = load_student(tmp_path / "student")
    except ArchcompressError:
        return
    with torch.no_grad():
        assert student(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@FUZZ
@given(document=json_values, tweak=st.sampled_from(["arch", "root", "metadata"]))
def test_random_json_in_arch_json_raises_only_our_error(
    document: Any, tweak: str, real_files: dict[str, bytes], tmp_path: Path
) -> None:
    """A well-formed arch.json whose architecture (or whole body) is replaced by random JSON."""
    original = json.loads(real_files["arch.json"])
    if tweak == "root":
        body = document
    elif tweak == "arch":
        body = {**original, "arch": document}
    else:
        body = {**original, "metadata": document}
    write_student(tmp_path / "student", json.dumps(body).encode(), real_files["model.pt"], fix_hash=False)
    try:
        load_student(tmp_path / "student")
    except ArchcompressError:
        return
    assert tweak == "metadata" or body == original


# --- the result store ----------------------------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(min_size=1, max_size=2000))
def test_random_bytes_as_a_store_are_refused_and_left_unchanged(raw: bytes, tmp_path: Path) -> None:
    assume(not raw.startswith(b"SQLite format 3\x00"))
    path = tmp_path / "store.sqlite"
    path.write_bytes(raw)
    with pytest.raises(ArchcompressError, match="corrupt or not an SQLite database"):
        ResultStore(path)
    assert path.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite"]  # no -wal / -shm left behind


small_json = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)


def stored_result(index: int, draw: st.DrawFn) -> StoredResult:
    text = st.text(max_size=6)
    return StoredResult(
        key=ResultKey(draw(text), draw(text), draw(text), draw(st.integers(0, 2**31)), f"{index:016x}"),
        status=draw(st.sampled_from(["ok", "invalid", "diverged"]) | text),
        val_accuracy=draw(st.none() | st.floats(0, 1)),
        params=draw(st.none() | st.integers(0, 2**62)),
        macs=draw(st.none() | st.integers(0, 2**62)),
        train_seconds=draw(st.none() | st.floats(0, 1e6)),
        method=draw(text),
        candidate=draw(st.dictionaries(st.text(max_size=4), small_json, max_size=3)),
        features=draw(st.lists(small_json, max_size=4)),
        extra=draw(st.dictionaries(st.text(max_size=4), small_json, max_size=2)),
    )


@st.composite
def result_batches(draw: st.DrawFn) -> list[StoredResult]:
    count = draw(st.integers(1, 12))
    return [stored_result(draw(st.integers(0, 15)), draw) for _ in range(count)]


def without_nan(value: Any) -> Any:
    """JSON round trips turn NaN into NaN (never equal to itself): compare with a stand-in."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    return value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=result_batches())
def test_concurrent_puts_of_random_results_never_corrupt_the_store(batch: list[StoredResult], tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.unlink(missing_ok=True)
    ResultStore(path)
    errors: list[BaseException] = []

    def writer(results: list[StoredResult]) -> None:
        store = ResultStore(path)  # each thread opens the file itself, as separate processes do
        try:
            for result in results:
                store.put(result)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(batch[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = ResultStore(path)
    rows = store.query()
    keys = {r.key for r in batch}
    assert len(rows) == len(store) == len(keys)
    # every stored row is one of the results put under its key (which one won a race is not specified)
    for row in rows:
        written = [r for r in batch if r.key == row.key]
        got = without_nan(dataclasses.asdict(dataclasses.replace(row, created=0.0)))
        assert any(got == without_nan(dataclasses.asdict(r)) for r in written)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def real_store_bytes(folder: Path) -> bytes:
    path = folder / "real.sqlite"
    store = ResultStore(path)
    candidate = {"keep": [True], "ratios": [0.5]}
    for index in range(20):
        key = ResultKey("t", "d", "b", 0, f"{index:016x}")
        store.put(StoredResult(key, "ok", 0.5, 1000 + index, 10, 1.0, "random", candidate, [0.1] * 8))
    return path.read_bytes()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return real_store_bytes(tmp_path_factory.mktemp("store"))


@FUZZ
@given(value=damage)
def test_damaged_real_stores_fail_clearly_or_still_work(value: Any, real_store: bytes, tmp_path: Path) -> None:
    """A truncated or bit-flipped store: refused with our error (and not modified), or readable."""
    path = tmp_path / "store.sqlite"
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    data = damaged(real_store, *value)
    path.write_bytes(data)
    try:
        store = ResultStore(path)
    except ArchcompressError:
        assert path.read_bytes() == data
        return
    try:
        rows = store.query()
    except ArchcompressError:
        return
    assert all(isinstance(r.key.candidate_hash, str) for r in rows)


def test_a_damaged_schema_version_is_refused(tmp_path: Path) -> None:
    """Found by the property above: a damaged page made the stored schema version unreadable (a TypeError)."""
    path = tmp_path / "store.sqlite"
    ResultStore(path)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE store_meta SET value = 'one' WHERE key = 'schema_version'")
    before = path.read_bytes()
    with pytest.raises(ArchcompressError, match="corrupt"):
        ResultStore(path)
    assert path.read_bytes() == before


def test_the_store_row_decoder_refuses_damaged_json_columns(tmp_path: Path) -> None:
    """A row whose JSON columns were damaged by hand: reading it is our error, not a JSONDecodeError."""
    path = tmp_path / "store.sqlite"
    store = ResultStore(path)
    store.put(StoredResult(ResultKey("t", "d", "b", 0, "c" * 16), "ok", 0.5, 10, 10, 1.0, "m", {"keep": []}))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE results SET candidate_json = '{not json'")
    with pytest.raises(ArchcompressError, match="corrupt"):
        store.query()
