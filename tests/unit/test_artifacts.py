import pytest

from plantstage.artifacts import digest, verify
from plantstage.errors import ArtifactError


def test_tree_digest_is_stable_and_ignores_bytecode(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    d1 = digest(tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert digest(tmp_path) == d1
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert digest(tmp_path) != d1


def test_verify_refuses_mismatch(tmp_path):
    f = tmp_path / "art.tar"
    f.write_bytes(b"release")
    assert verify(f, digest(f), where="spec") == digest(f)
    with pytest.raises(ArtifactError) as exc:
        verify(f, "0" * 64, where="spec:12")
    assert "digest mismatch" in exc.value.message and exc.value.where == "spec:12"


def test_missing_artifact(tmp_path):
    with pytest.raises(ArtifactError):
        digest(tmp_path / "missing")


def test_digest_walk_is_bounded_by_files(tmp_path):
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x")
    assert digest(tmp_path, max_files=5)
    with pytest.raises(ArtifactError) as exc:
        digest(tmp_path, max_files=4)
    assert "more than 4 files" in exc.value.message


def test_digest_walk_is_bounded_by_bytes(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 1000)
    with pytest.raises(ArtifactError) as exc:
        digest(tmp_path, max_bytes=999)
    assert "larger than" in exc.value.message
    with pytest.raises(ArtifactError):
        digest(tmp_path / "big", max_bytes=999)


def test_links_out_of_the_tree_are_refused(tmp_path):
    (tmp_path / "a.py").write_text("x")
    (tmp_path / "out").symlink_to("/etc/hostname")
    with pytest.raises(ArtifactError) as exc:
        digest(tmp_path)
    assert "outside the artifact" in exc.value.message


def test_links_inside_the_tree_are_followed(tmp_path):
    (tmp_path / "a.py").write_text("x")
    d1 = digest(tmp_path)
    (tmp_path / "b.py").symlink_to(tmp_path / "a.py")
    assert digest(tmp_path) != d1


def test_special_files_and_system_trees_are_refused(tmp_path):
    import os

    for path in ("/dev/null", "/proc/self", "/proc/self/status", "/sys"):
        with pytest.raises(ArtifactError) as exc:
            digest(path)
        assert "not a release" in exc.value.message
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactError) as exc:
        digest(fifo)
    assert "neither a file nor a folder" in exc.value.message
    (tmp_path / "a.py").write_text("x")
    assert digest(tmp_path)  # a pipe inside a tree is skipped, never read


def test_digest_order_is_by_path_parts(tmp_path):
    """The tree digest hashes paths in the order of their parts (stable across machines)."""
    import hashlib

    for rel in ("a/b.txt", "a-b.txt", "a.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    h = hashlib.sha256()
    for rel in sorted(["a/b.txt", "a-b.txt", "a.txt"], key=lambda r: r.split("/")):
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(rel.encode()).hexdigest().encode() + b"\n")
    assert digest(tmp_path) == h.hexdigest()


def test_confine(tmp_path):
    from plantstage.artifacts import confine

    (tmp_path / "rel").mkdir()
    assert confine(tmp_path, "rel", where="spec") == (tmp_path / "rel").resolve()
    assert confine(tmp_path, "{artifact}/config.yaml", where="spec")
    for bad in ("..", "/etc/hostname", "{artifact}/../../x"):
        with pytest.raises(ArtifactError):
            confine(tmp_path, bad, where="spec:3")
    assert confine(tmp_path, "/etc/hostname", allow_outside=["/etc"], where="spec")
