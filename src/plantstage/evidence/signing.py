"""The Ed25519 key that signs evidence bundles (``cryptography``).

Where the key comes from, first match wins:

1. ``PLANTSTAGE_SIGNING_KEY`` — a PEM private key itself, or the path of one;
2. ``$PLANTSTAGE_KEY_DIR/signing-key.pem`` (default ``~/.config/plantstage/signing-key.pem``),
   generated on first use (mode 0600) with a one-line message on stderr.

The public key travels in each bundle (``chain.sig``), so anyone can verify it; pin the key you
trust with ``plantstage verify RUN --key PUB.pem``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from plantstage.errors import PlantstageError

KEY_FILE = "signing-key.pem"


class SigningError(PlantstageError):
    """The signing key is unusable."""


def key_path() -> Path:
    base = os.environ.get("PLANTSTAGE_KEY_DIR")
    return (Path(base) if base else Path.home() / ".config" / "plantstage") / KEY_FILE


def _load_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"not a PEM private key: {exc}", where=where,
                           hint="give an unencrypted Ed25519 key in PEM") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError("the signing key is not Ed25519", where=where,
                           hint="generate one: openssl genpkey -algorithm ed25519")
    return key


def load_signing_key(echo=None) -> Ed25519PrivateKey:
    """The key evidence is signed with; generated (and announced) on first use."""
    env = os.environ.get("PLANTSTAGE_SIGNING_KEY")
    if env:
        if env.lstrip().startswith("-----BEGIN"):
            return _load_pem(env.encode(), "PLANTSTAGE_SIGNING_KEY")
        p = Path(env).expanduser()
        if not p.is_file():
            raise SigningError("no key file here", where=f"PLANTSTAGE_SIGNING_KEY={env}",
                               hint="give a PEM key or the path of one")
        return _load_pem(p.read_bytes(), str(p))
    p = key_path()
    if p.is_file():
        return _load_pem(p.read_bytes(), str(p))
    key = Ed25519PrivateKey.generate()
    p.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    msg = (f"plantstage: generated a new Ed25519 evidence signing key at {p} "
           f"(fingerprint {fingerprint(public_pem(key))}); keep it to sign future evidence")
    (echo or (lambda m: print(m, file=sys.stderr)))(msg)
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(pub_pem: str) -> str:
    """SHA-256 of the raw public key, first 16 hex digits in groups of 4."""
    pub = serialization.load_pem_public_key(pub_pem.encode())
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    h = hashlib.sha256(raw).hexdigest()[:16]
    return ":".join(h[i:i + 4] for i in range(0, 16, 4))


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def verify_signature(pub_pem: str, signature: str, data: bytes) -> bool:
    try:
        pub = serialization.load_pem_public_key(pub_pem.encode())
        if not isinstance(pub, Ed25519PublicKey):
            return False
        pub.verify(base64.b64decode(signature), data)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False
