"""Storage layout and atomic writes: a table value can never leave the root, and no half file is ever seen."""

from __future__ import annotations

import os
import posixpath
import uuid

import fsspec
import pytest
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, cell_dir, safe_component
from nbpro_pipeline.storage.filesystem import MAX_COMPONENT

NASTY_IDS = [
    "",
    ".",
    "..",
    "...",
    "/",
    "//",
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../b",
    "..\\..\\windows",
    "nul\x00byte",
    "\x00",
    "x" * 5000,
    "." + "y" * 200,
    "ünïcødé/名前",
    "名前",
    "emoji-🍌",
    "\ud800lone-surrogate",
    " spaced out ",
    "-",
    "_",
    ".hidden",
    "trailing.",
    "CON",
    "a\nb",
]


@pytest.mark.parametrize("value", NASTY_IDS, ids=repr)
def test_safe_component_is_one_harmless_component(value):
    c = safe_component(value)
    assert c not in ("", ".", "..")
    assert "/" not in c and "\\" not in c and "\x00" not in c
    assert not c.startswith((".", "_"))  # never a name that Storage.find treats as hidden
    assert len(c) <= MAX_COMPONENT + 11
    assert c.isascii()
    assert safe_component(value) == c  # deterministic


def test_safe_component_keeps_plain_ids_as_they_are():
    for value in ("p001", "prompt-42", "A.b_c-9", "x" * MAX_COMPONENT):
        assert safe_component(value) == value


def test_distinct_ids_stay_distinct():
    pairs = [("a/b", "a_b"), ("a b", "a_b"), ("a/b", "a b"), (".", ".."), ("é", "è"), ("x" * 100, "x" * 101)]
    for a, b in pairs:
        assert safe_component(a) != safe_component(b), (a, b)
    many = [f"id/{i}" for i in range(200)] + [f"id_{i}" for i in range(200)] + NASTY_IDS
    assert len({safe_component(v) for v in many}) == len(set(many))


@pytest.mark.parametrize("prompt_id", NASTY_IDS, ids=repr)
def test_image_path_stays_under_the_root(tmp_path, prompt_id):
    storage = Storage(tmp_path / "root")
    for place in (storage.image_path, storage.quarantine_path):
        path = place(Provider.RIVYA, Resolution.R2K, prompt_id, "abcdef0123456789", "png")
        normal = os.path.normpath(path)
        assert normal.startswith(storage.root + os.sep)
        assert normal == path  # nothing to normalise away: no '..', no '//', no '.'
        rel = os.path.relpath(path, storage.root).split(os.sep)
        assert rel[:3] == [rel[0], "provider=rivya", "resolution=2K"] and len(rel) == 4
        assert rel[3].endswith("-abcdef01.png")


def test_writing_a_nasty_id_lands_inside_the_root(tmp_path):
    storage = Storage(tmp_path / "root")
    path = storage.image_path(Provider.ODIROUTER, Resolution.R1K, "../../../escape", "f" * 64, "png")
    storage.write_bytes(path, b"img")
    inside = {os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs}
    assert all(p.startswith("root" + os.sep) for p in inside)
    assert not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize("part", ["..", ".", "", "/etc", "a/../../b", "../x", "x/..", "a/../b"])
def test_path_refuses_parts_that_could_leave_the_root(tmp_path, part):
    storage = Storage(tmp_path)
    with pytest.raises(ValueError, match="refusing"):
        storage.path("images", part)


def test_path_accepts_layout_parts(tmp_path):
    storage = Storage(tmp_path)
    p = storage.path("images", cell_dir("rivya", "4K"), "x.png")
    assert p == f"{storage.root}/images/provider=rivya/resolution=4K/x.png"


def test_open_atomic_leaves_nothing_on_exception(local_storage):
    path = local_storage.path("images", "a", "img.png")
    with pytest.raises(RuntimeError), local_storage.open_atomic(path) as fh:
        fh.write(b"half a file")
        raise RuntimeError("boom")
    assert not local_storage.exists(path)
    parent = os.path.dirname(path)
    assert os.listdir(parent) == []  # no tmp file left behind either


def test_open_atomic_keeps_the_old_file_when_a_rewrite_fails(local_storage):
    path = local_storage.path("x", "f.bin")
    local_storage.write_bytes(path, b"good")
    with pytest.raises(KeyboardInterrupt), local_storage.open_atomic(path) as fh:
        fh.write(b"bad")
        raise KeyboardInterrupt
    assert local_storage.read_bytes(path) == b"good"
    assert os.listdir(os.path.dirname(path)) == ["f.bin"]


def test_open_atomic_success_leaves_only_the_file(local_storage):
    for i in range(5):
        local_storage.write_bytes(local_storage.path("d", f"f{i}.bin"), bytes([i]) * 10)
    files = sorted(os.listdir(local_storage.path("d")))
    assert files == [f"f{i}.bin" for i in range(5)]
    assert local_storage.read_bytes(local_storage.path("d", "f3.bin")) == b"\x03" * 10


def test_put_file_and_find_hide_tmp_files(local_storage, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    target = local_storage.path("put", "dst.bin")
    local_storage.put_file(str(src), target)
    open(local_storage.path("put") + "/.tmp-stray", "wb").close()
    open(local_storage.path("put") + "/_hidden", "wb").close()
    assert local_storage.find(local_storage.path("put")) == [target]
    assert local_storage.find(local_storage.path("nope")) == []


def test_memory_root_round_trip(memory_storage):
    path = memory_storage.path("a", "b.bin")
    memory_storage.write_bytes(path, b"xyz")
    assert memory_storage.read_bytes(path) == b"xyz"
    assert memory_storage.uri(path).startswith("memory://")
    assert memory_storage.find(memory_storage.path("a")) == [path]
    assert not memory_storage.is_local


def test_open_atomic_on_memory_root_leaves_nothing_on_exception(memory_storage):
    path = memory_storage.path("a", "partial.bin")
    with pytest.raises(RuntimeError), memory_storage.open_atomic(path) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert not memory_storage.exists(path)


# -- an object-store-like filesystem: the object is PUT when the file closes -------------------------
class _ObjectFile(AbstractBufferedFile):
    def _initiate_upload(self):
        self._parts = []

    def _upload_chunk(self, final=False):
        self._parts.append(self.buffer.getvalue())
        if final:
            self.fs.objects[self.path] = b"".join(self._parts)
        return True

    def _fetch_range(self, start, end):
        return self.fs.objects[self.path][start:end]


class ObjectStoreFS(AbstractFileSystem):
    protocol = "fakeobj"
    objects: dict[str, bytes] = {}

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs):
        return _ObjectFile(self, self._strip_protocol(path), mode, block_size or 2**20, autocommit, **kwargs)

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path in self.objects:
            return {"name": path, "size": len(self.objects[path]), "type": "file"}
        if any(k.startswith(path.rstrip("/") + "/") for k in self.objects):
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path).rstrip("/")
        names = sorted(
            {path + "/" + k[len(path) + 1 :].split("/")[0] for k in self.objects if k.startswith(path + "/")}
        )
        return [self.info(n) for n in names] if detail else names


@pytest.fixture
def object_storage():
    fsspec.register_implementation("fakeobj", ObjectStoreFS, clobber=True)
    ObjectStoreFS.objects = {}
    return Storage(f"fakeobj://bucket-{uuid.uuid4().hex[:8]}/prefix")


def test_open_atomic_on_object_store_puts_on_close_only(object_storage):
    path = object_storage.path("x", "ok.bin")
    with object_storage.open_atomic(path) as fh:
        fh.write(b"complete")
        assert posixpath.normpath(path) not in ObjectStoreFS.objects
    assert object_storage.read_bytes(path) == b"complete"


def test_open_atomic_on_object_store_uploads_nothing_on_exception(object_storage):
    path = object_storage.path("x", "partial.bin")
    with pytest.raises(RuntimeError), object_storage.open_atomic(path) as fh:
        fh.write(b"half a file")
        raise RuntimeError("boom")
    assert not object_storage.exists(path)
    assert ObjectStoreFS.objects == {}


def test_a_directory_removed_behind_the_storages_back_is_made_again(tmp_path):
    """Directories are made once per process (a saving per image); one deleted since is made again."""
    import shutil

    st = Storage(tmp_path)
    target = st.path("images", "a", "x.png")
    st.write_bytes(target, b"one")
    scratch = st.scratch_dir()
    shutil.rmtree(tmp_path / "images")
    shutil.rmtree(scratch)
    st.write_bytes(target, b"two")
    assert st.read_bytes(target) == b"two"
    assert os.path.isdir(st.scratch_dir())
