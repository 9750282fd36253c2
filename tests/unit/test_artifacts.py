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
