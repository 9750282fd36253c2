"""Evidence signing keys (Ed25519, ``cryptography``) and the public keys a verifier trusts.

**Signing key** — what ``rehearse``, ``gate`` and ``signoff`` sign with, first match wins:

1. ``PLANTSTAGE_SIGNING_KEY`` — a PEM Ed25519 private key itself, or the path of one;
2. ``$PLANTSTAGE_KEY_DIR/signing-key.pem`` (default ``~/.config/plantstage/signing-key.pem``).

A key is made by a deliberate ``plantstage keys init`` (:func:`init_key`). ``rehearse`` (and so
``demo``) also makes it on first use and says so in one line; ``gate`` and ``signoff`` never
make one (they must sign with the key that signed the run); ``verify`` never reads it at all.

**Trusted keys** — the public keys a bundle must be signed with (:func:`trusted_keys`): a PEM
public key file, or the base64 of the raw 32-byte Ed25519 public key (what ``keys init``
prints). They come from ``verify --key``, ``PLANTSTAGE_TRUSTED_KEYS``, or the project the run
folder lives in (``evidence.trusted_keys`` in its ``plantstage.yaml``, or
``.plantstage/trusted_keys``) — never from the bundle itself, which an attacker can rewrite.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from plantstage.errors import PlantstageError

KEY_FILE = "signing-key.pem"
PUBLIC_FILE = "signing-key.pub.pem"
#: Environment variable: trusted public keys (paths or base64), separated by ``os.pathsep``.
TRUSTED_ENV = "PLANTSTAGE_TRUSTED_KEYS"
#: A project's trusted keys file (one key per line: a path or base64; ``#`` comments).
TRUSTED_FILE = Path(".plantstage") / "trusted_keys"
_MAX_KEY_FILE = 64 * 1024


class SigningError(PlantstageError):
    """A signing or trusted key is missing or unusable."""


def key_path() -> Path:
    base = os.environ.get("PLANTSTAGE_KEY_DIR")
    return (Path(base) if base else Path.home() / ".config" / "plantstage") / KEY_FILE


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):
        return False


def _read_small(p: Path, where: str) -> bytes:
    where = where if len(where) <= 300 else where[:300] + "…"
    try:
        if not p.is_file():
            raise SigningError("no key file here", where=where,
                               hint="give the path of a PEM key file")
        if p.stat().st_size > _MAX_KEY_FILE:
            raise SigningError("too large to be a key file", where=where,
                               hint="give the path of a PEM key file")
        return p.read_bytes()
    except (OSError, ValueError) as exc:
        raise SigningError(f"cannot read the key: {getattr(exc, 'strerror', None) or exc}",
                           where=where) from None


def _load_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningError("not an unencrypted PEM private key", where=where,
                           hint="give an Ed25519 key in PEM, or run `plantstage keys init`"
                           ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError("the signing key is not Ed25519", where=where,
                           hint="run `plantstage keys init`, or: openssl genpkey -algorithm "
                           "ed25519") from None
    return key


def _announce(echo: Callable[[str], None] | None, msg: str) -> None:
    (echo or (lambda m: print(m, file=sys.stderr)))(msg)


def _write_new_key(p: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        write_public_file(p, key)
    except OSError as exc:
        raise SigningError(f"cannot write the signing key: {exc.strerror or exc}",
                           where=str(p), hint="set PLANTSTAGE_KEY_DIR to a writable folder"
                           ) from None
    return key


def write_public_file(private_path: Path, key: Ed25519PrivateKey) -> Path:
    """Write the public half beside the private key (what verifiers pin)."""
    pub = private_path.with_name(PUBLIC_FILE)
    pub.write_text(public_pem(key))
    return pub


def load_signing_key(echo: Callable[[str], None] | None = None, *,
                     create: bool = False) -> Ed25519PrivateKey:
    """The key evidence is signed with.

    Without ``create`` a missing key is an error (one line naming ``plantstage keys init``);
    with it (the rehearsal's first run) the key is made and announced in one line.
    """
    env = os.environ.get("PLANTSTAGE_SIGNING_KEY")
    if env:
        if env.lstrip().startswith("-----BEGIN"):
            return _load_pem(env.encode(), "PLANTSTAGE_SIGNING_KEY")
        p = Path(env).expanduser()
        return _load_pem(_read_small(p, f"PLANTSTAGE_SIGNING_KEY={env}"), str(p))
    p = key_path()
    if p.is_file():
        return _load_pem(_read_small(p, str(p)), str(p))
    if not create:
        raise SigningError("no evidence signing key", where=str(p),
                           hint="run `plantstage keys init` (or set PLANTSTAGE_SIGNING_KEY)")
    key = _write_new_key(p)
    _announce(echo, f"plantstage: made an Ed25519 evidence signing key at {p} (fingerprint "
                    f"{fingerprint(public_pem(key))}); `plantstage keys init` shows it")
    return key


@dataclass
class KeyInfo:
    path: Path
    public_path: Path | None
    public_pem: str
    fingerprint: str
    base64: str
    created: bool


def init_key() -> KeyInfo:
    """``plantstage keys init``: make the signing key if there is none; describe it either way."""
    env = os.environ.get("PLANTSTAGE_SIGNING_KEY")
    created = False
    if env:
        key = load_signing_key()
        path = Path("PLANTSTAGE_SIGNING_KEY") if env.lstrip().startswith("-----BEGIN") \
            else Path(env).expanduser()
        pub_path = None
    else:
        path = key_path()
        if path.is_file():
            key = load_signing_key()
        else:
            key = _write_new_key(path)
            created = True
        pub_path = path.with_name(PUBLIC_FILE)
        if not pub_path.is_file() or pub_path.read_text() != public_pem(key):
            try:
                write_public_file(path, key)
            except OSError:
                pub_path = None
    pem = public_pem(key)
    return KeyInfo(path, pub_path, pem, fingerprint(pem), public_b64(pem), created)


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def raw_public(pub_pem: str) -> bytes:
    """The raw 32 bytes of a PEM Ed25519 public key (ValueError if it is not one)."""
    try:
        pub = serialization.load_pem_public_key(pub_pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm, UnicodeError):
        raise ValueError("not a PEM public key") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pem_of_raw(raw: bytes) -> str:
    """The PEM text plantstage writes for a raw Ed25519 public key."""
    return Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_b64(pub_pem: str) -> str:
    return base64.b64encode(raw_public(pub_pem)).decode()


def fingerprint_raw(raw: bytes) -> str:
    """SHA-256 of the raw public key, first 16 hex digits in groups of 4."""
    h = hashlib.sha256(raw).hexdigest()[:16]
    return ":".join(h[i:i + 4] for i in range(0, 16, 4))


def fingerprint(pub_pem: str) -> str:
    return fingerprint_raw(raw_public(pub_pem))


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def verify_signature(pub_pem: str, signature: str, data: bytes) -> bool:
    try:
        pub = serialization.load_pem_public_key(pub_pem.encode())
        if not isinstance(pub, Ed25519PublicKey):
            return False
        pub.verify(base64.b64decode(signature, validate=True), data)
        return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm, UnicodeError,
            binascii.Error):
        return False


# -- trusted keys ------------------------------------------------------------------------

@dataclass(frozen=True)
class TrustedKey:
    raw: bytes
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_raw(self.raw)


def parse_public_key(value: str, *, where: str, base_dir: Path | None = None) -> TrustedKey:
    """A trusted key given as a PEM file's path, PEM text, or base64 of the raw key."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        data = text.encode()
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        p = Path(text).expanduser()
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        if len(raw) == 32 and not _exists(p):
            return TrustedKey(raw, where)
        data = _read_small(p, where if where.endswith(text) else f"{where}: {text}")
    if b"PRIVATE KEY" in data:
        raise SigningError("this is a private key; a verifier pins the public key",
                           where=where, hint=f"give {PUBLIC_FILE} (`plantstage keys init` "
                           "prints where it is)")
    try:
        raw = raw_public(data.decode("utf-8", "replace"))
    except ValueError as exc:
        raise SigningError(f"{exc}", where=where,
                           hint="give an Ed25519 public key in PEM, or its base64 "
                           "(`plantstage keys init` prints both)") from None
    return TrustedKey(raw, where)


def _project_of(run_dir: Path) -> Path | None:
    """The project folder a run folder lives in (outside the bundle): the nearest ancestor
    holding ``plantstage.yaml`` or ``.plantstage/trusted_keys``."""
    for d in run_dir.resolve().parents:
        if (d / "plantstage.yaml").is_file() or (d / TRUSTED_FILE).is_file():
            return d
    return None


def trusted_keys(run_dir: Path, explicit: list[str | Path] | None = None) -> list[TrustedKey]:
    """The pinned public keys for a run folder (empty: nothing pinned → integrity only).

    ``explicit`` (``verify --key``) replaces every other source; otherwise
    ``PLANTSTAGE_TRUSTED_KEYS`` and the run's project (``.plantstage/trusted_keys``,
    ``evidence.trusted_keys`` in its ``plantstage.yaml``) together.
    """
    if explicit:
        return [parse_public_key(str(k), where=str(k)) for k in explicit]
    keys: list[TrustedKey] = []
    env = os.environ.get(TRUSTED_ENV, "")
    for item in (x for x in env.split(os.pathsep) if x.strip()):
        keys.append(parse_public_key(item, where=f"{TRUSTED_ENV}: {item.strip()}"))
    project = _project_of(run_dir)
    if project is not None:
        f = project / TRUSTED_FILE
        if f.is_file():
            text = _read_small(f, str(f)).decode("utf-8", "replace")
            for n, line in enumerate(text.splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if line:
                    keys.append(parse_public_key(line, where=f"{f}:{n}", base_dir=project))
        spec = project / "plantstage.yaml"
        if spec.is_file():
            keys.extend(_spec_keys(spec))
    return keys


def _spec_keys(spec_file: Path) -> list[TrustedKey]:
    from plantstage.spec.loader import parse_spec_text

    try:
        text = spec_file.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise SigningError(f"cannot read the project's spec: {exc}", where=str(spec_file)
                           ) from None
    loaded = parse_spec_text(text, spec_file)
    settings = getattr(loaded.spec, "evidence", None)
    out = []
    for i, k in enumerate(getattr(settings, "trusted_keys", None) or []):
        out.append(parse_public_key(k, where=f"{spec_file}: evidence.trusted_keys[{i}]",
                                    base_dir=spec_file.parent))
    return out
