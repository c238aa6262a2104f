"""Payloads at rest: compression (zstd, zlib as the fallback) and AES-GCM encryption with
rotating keys, applied by ``EventStore`` to ``data``, ``raw`` and snapshot states.

A sealed payload is still JSON text of an object, as the driver contract asks: the envelope
``{"$sealed":"1.<c><e>.<kid>.<body>"}``, where ``1`` is the format version, ``<c>`` the
compression (``z`` zstd, ``d`` zlib, ``n`` none), ``<e>`` the encryption (``g`` AES-256-GCM,
``n`` none), ``<kid>`` the key id (empty without encryption) and ``<body>`` the base64 of the
12-byte nonce and the ciphertext (or of the compressed bytes). A plain payload that has a
top-level ``$sealed`` key of its own is stored escaped, ``{"$sealed":"plain","value":...}``,
so that stored text starting with ``{"$sealed":`` is always an envelope.

The associated data of AES-GCM binds each ciphertext to where it belongs (the session, the
event id or the snapshot's sequence and version, the field) and to its header: a ciphertext
that was changed or moved fails to open, as ``StoreCorrupt``. A key id the keyring lacks is
``StoreKeyError``. Keys: ``Keyring.parse`` (docs/persistence.md, "Encryption and
compression").
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic_core import from_json, to_json

from sandbox_agent.store.errors import StoreConfigError, StoreCorrupt, StoreKeyError

log = logging.getLogger(__name__)

SEALED_KEY = "$sealed"
#: Every envelope's stored text starts so (``dump_json`` writes no spaces).
PREFIX = '{"$sealed":'
_BPREFIX = PREFIX.encode()
VERSION = "1"
KEY_BYTES = 32
NONCE_BYTES = 12
#: A key id: what a header can carry without ambiguity (no dot), short.
_KID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
KID_MAX = 64
#: The largest payload a stored envelope may expand to (a bound against decompression bombs).
MAX_PLAIN_BYTES = 1 << 30

COMPRESSIONS = ("zstd", "zlib")
_CODE = {"zstd": "z", "zlib": "d", None: "n"}


def zstd_available() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def is_envelope(stored: Any) -> bool:
    """Whether a stored ``data``/``raw``/state text is an envelope (sealed or escaped)."""
    if isinstance(stored, str):
        return stored.startswith(PREFIX)
    if isinstance(stored, bytes | bytearray | memoryview):
        return bytes(stored[: len(_BPREFIX)]) == _BPREFIX
    return False


def needs_escape(value: Any) -> bool:
    return isinstance(value, dict) and SEALED_KEY in value


_ESCAPE = '{"$sealed":"plain","value":'
_V1 = PREFIX + '"' + VERSION + "."


def escaped(text: str) -> str:
    """The stored form of a plain payload (JSON text) that has a top-level ``$sealed`` key."""
    return _ESCAPE + text + "}"


def envelope_of(value: Any) -> Any:
    """``value`` as an export line shows it: a plain object with a ``$sealed`` key escaped."""
    return {SEALED_KEY: "plain", "value": value} if needs_escape(value) else value


def validate_kid(kid: str, where: str) -> str:
    if not kid or len(kid) > KID_MAX or not set(kid) <= _KID_CHARS:
        raise StoreConfigError(
            f"{where}: key id {kid!r} must be 1..{KID_MAX} characters of A-Z a-z 0-9 _ -"
        )
    return kid


@dataclass(frozen=True)
class Keyring:
    """Keys by id (32 bytes each, for AES-256-GCM) and the ``active`` one, which seals new
    writes; the others still open what they sealed. ``repr`` never shows a key."""

    keys: Mapping[str, bytes] = field(repr=False)
    active: str

    def __post_init__(self) -> None:
        for kid, key in self.keys.items():
            validate_kid(kid, "keyring")
            if len(key) != KEY_BYTES:
                raise StoreConfigError(f"keyring: key {kid!r} is {len(key)} bytes, not 32")
        if self.active not in self.keys:
            raise StoreConfigError(
                f"keyring: the active key id {self.active!r} is not among its keys "
                f"({', '.join(sorted(self.keys)) or 'none'})"
            )

    @classmethod
    def parse(cls, text: str, where: str, active: str | None = None) -> Keyring:
        """A keyring's text: one key a line, ``KID:BASE64`` (32 bytes once decoded), blank
        lines and ``#`` comments ignored; a line that is only a key has the id ``default``.
        The last key listed is the active one unless ``active`` names another. Errors name
        ``where`` and the line, never a key."""
        keys: dict[str, bytes] = {}
        last: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kid, sep, encoded = line.rpartition(":")
            kid = kid.strip() if sep else "default"
            validate_kid(kid, f"{where}, line {number}")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise StoreConfigError(
                    f"{where}, line {number}: key {kid!r} is not base64"
                ) from None
            if len(key) != KEY_BYTES:
                raise StoreConfigError(
                    f"{where}, line {number}: key {kid!r} is {len(key)} bytes once decoded, "
                    f"not {KEY_BYTES} (make one with: openssl rand -base64 32)"
                )
            if kid in keys:
                raise StoreConfigError(f"{where}, line {number}: key id {kid!r} is listed twice")
            keys[kid] = key
            last = kid
        if last is None:
            raise StoreConfigError(f"{where}: no key in it")
        return cls(keys, active or last)

    @classmethod
    def load(cls, spec: str, active: str | None = None) -> Keyring:
        """The keyring a ``keys`` option names: ``env:NAME`` (an environment variable holding
        the keyring's text) or ``file:PATH`` (a file holding it). A key itself is refused
        there (and not repeated in the error): options end up in URLs, URLs in logs."""
        kind, _, name = spec.partition(":")
        if kind == "env" and name:
            text = os.environ.get(name)
            if text is None:
                raise StoreConfigError(f"store option keys=env:{name}: {name} is not set")
            return cls.parse(text, f"keys=env:{name}", active)
        if kind == "file" and name:
            try:
                text = Path(name).read_text(encoding="utf-8")
            except OSError as exc:
                raise StoreConfigError(
                    f"store option keys=file:{name}: cannot read it ({exc.strerror})"
                ) from None
            return cls.parse(text, f"keys=file:{name}", active)
        raise StoreConfigError(
            "store option keys must be env:NAME or file:PATH (the value given is not shown: "
            "it may be a key, and keys never go in a URL)"
        )


class _Codecs(threading.local):
    """zstd contexts per thread (they are not thread-safe), made on first use."""

    def __init__(self) -> None:
        self.compressor: Any = None
        self.decompressor: Any = None


_codecs = _Codecs()


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise StoreConfigError(
            "a payload is compressed with zstd, and the zstandard package is not installed "
            "(pip install 'sandbox-agent[seal]')"
        ) from None
    return zstandard


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "zstd":
        if _codecs.compressor is None:
            _codecs.compressor = _zstd().ZstdCompressor(level=3)
        out: bytes = _codecs.compressor.compress(data)
        return out
    return zlib.compress(data, 6)


def _decompress(code: str, data: bytes) -> bytes:
    if code == "z":
        if _codecs.decompressor is None:
            _codecs.decompressor = _zstd().ZstdDecompressor()
        out: bytes = _codecs.decompressor.decompress(data, max_output_size=MAX_PLAIN_BYTES)
        return out
    if code == "d":
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, MAX_PLAIN_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"it expands past {MAX_PLAIN_BYTES} bytes")
        return out
    raise ValueError(f"unknown compression {code!r}")


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise StoreConfigError(
            "encrypted payloads need the cryptography package (pip install 'sandbox-agent[seal]')"
        ) from None
    return AESGCM


class Where(NamedTuple):
    """Where a payload lives, for its associated data and for errors (a tuple: one is made
    per payload read)."""

    session_id: str
    sequence: int  # 0 before the store numbered it (an append)
    key: str  # the event id, or "snapshot <sequence>/<version>"
    field: str  # data, raw, state

    def aad(self, header: str) -> bytes:
        # NUL cannot occur in ids the store keeps (InvalidText), so the parts cannot blur.
        return (
            f"sandbox-agent\x00{header}\x00{self.session_id}\x00{self.key}\x00{self.field}".encode()
        )

    def describe(self) -> str:
        at = f"sequence {self.sequence}" if self.sequence else self.key
        return f"{at}, {self.field}"


class Sealer:
    """Seals and opens payload texts for one store: ``compress`` (``zstd``, ``zlib`` or None)
    and ``keyring`` (None: no encryption). Both None still opens compressed envelopes, and
    names the key id of encrypted ones that it cannot open."""

    def __init__(self, compress: str | None = None, keyring: Keyring | None = None) -> None:
        if compress is not None and compress not in COMPRESSIONS:
            raise StoreConfigError(
                f"store option compress must be zstd, zlib or none, got {compress!r}"
            )
        if compress == "zstd" and not zstd_available():
            log.warning("compress=zstd: the zstandard package is not installed; using zlib")
            compress = "zlib"
        self.compress = compress
        self.keyring = keyring
        self._ciphers: dict[str, Any] = {}

    @property
    def active(self) -> bool:
        """Whether new writes are sealed at all."""
        return self.compress is not None or self.keyring is not None

    def describe(self) -> str:
        parts = [f"compress={self.compress or 'none'}"]
        if self.keyring is not None:
            parts.append(f"key={self.keyring.active} of {sorted(self.keyring.keys)}")
        return ", ".join(parts)

    def _cipher(self, kid: str) -> Any:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            assert self.keyring is not None
            cipher = self._ciphers[kid] = _aesgcm()(self.keyring.keys[kid])
        return cipher

    def seal(self, text: str, where: Where) -> str:
        """The stored text of a payload's JSON ``text``: an envelope, or the plain text
        itself when compression alone would not make it smaller."""
        plain = text.encode()
        body = plain
        code = "n"
        if self.compress is not None:
            packed = _compress(self.compress, plain)
            if len(packed) < len(plain):
                body, code = packed, _CODE[self.compress]
        if self.keyring is None:
            if code == "n" or (len(body) * 4 + 2) // 3 + 20 >= len(plain):
                return plain_text(text)  # no gain once in base64 and an envelope
            header = f"{VERSION}.{code}n."
            return f'{PREFIX}"{header}.{base64.b64encode(body).decode()}"}}'
        kid = self.keyring.active
        header = f"{VERSION}.{code}g.{kid}"
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(kid).encrypt(nonce, body, where.aad(header))
        return f'{PREFIX}"{header}.{base64.b64encode(nonce + sealed).decode()}"}}'

    def open(self, stored: str | bytes, where: Where, *, keep_encrypted: bool = False) -> str:
        """The plain JSON text of a stored envelope. ``StoreKeyError`` for a key id the keyring
        lacks; ``StoreCorrupt`` for an envelope that does not open (changed, moved, sealed
        with another key of that id). With ``keep_encrypted`` an encrypted envelope is given
        back as it is (and escapes and compression are still opened)."""
        text = stored if isinstance(stored, str) else bytes(stored).decode()
        # The form seal writes, cut apart without a JSON parse (reads open one per payload).
        if text.startswith(_V1) and text.endswith('"}'):
            parts = text[len(PREFIX) + 1 : -2].split(".", 3)
            if len(parts) == 4 and len(parts[1]) == 2 and '"' not in parts[3]:
                if keep_encrypted and parts[1][1] == "g":
                    return stored if isinstance(stored, str) else text
                return self._open_v1(parts, where)
        try:
            envelope = from_json(text)
            tag = envelope[SEALED_KEY]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._corrupt(where, f"its envelope is not JSON ({exc})") from None
        if tag == "plain":
            if len(envelope) != 2 or "value" not in envelope:
                raise self._corrupt(where, "an escaped payload without its value")
            if text.startswith(_ESCAPE) and text.endswith("}"):
                return text[len(_ESCAPE) : -1]  # the value's text as stored, not re-encoded
            return dump(envelope["value"])
        if not isinstance(tag, str) or len(envelope) != 1:
            raise self._corrupt(where, f"unknown envelope {str(tag)[:40]!r}")
        parts = tag.split(".", 3)
        if len(parts) != 4 or parts[0] != VERSION or len(parts[1]) != 2:
            raise self._corrupt(where, f"unknown envelope format {tag[:40]!r}")
        if keep_encrypted and parts[1][1] == "g":
            return stored if isinstance(stored, str) else text
        return self._open_v1(parts, where)

    def _open_v1(self, parts: list[str], where: Where) -> str:
        version, algorithms, kid, encoded = parts
        code, encryption = algorithms[0], algorithms[1]
        try:
            body = binascii.a2b_base64(encoded, strict_mode=True)
        except binascii.Error:
            raise self._corrupt(where, "its body is not base64", kid) from None
        if encryption == "g":
            cipher = self._ciphers.get(kid)
            if cipher is None:
                if self.keyring is None or kid not in self.keyring.keys:
                    raise StoreKeyError(
                        where.session_id,
                        where.describe(),
                        kid,
                        "no such key in this store's keyring"
                        if self.keyring is not None
                        else "the store was opened without keys",
                    )
                cipher = self._cipher(kid)
            header = f"{version}.{algorithms}.{kid}"
            try:
                body = cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], where.aad(header))
            except Exception:  # cryptography's InvalidTag; ValueError for a short body
                raise self._corrupt(
                    where,
                    "its ciphertext does not authenticate (changed, moved from elsewhere, or "
                    f"sealed with another key named {kid!r})",
                    kid,
                ) from None
        elif encryption != "n":
            raise self._corrupt(where, f"unknown encryption {encryption!r}")
        if code != "n":
            try:
                body = _decompress(code, body)
            except StoreConfigError:
                raise
            except Exception as exc:  # zlib.error, zstd.ZstdError
                raise self._corrupt(where, f"it does not decompress ({exc})", kid) from None
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise self._corrupt(where, "it does not open to UTF-8", kid) from None

    def sealed_with(self, stored: Any) -> tuple[str, str] | None:
        """``(algorithms, key id)`` of a sealed envelope's header; None for a plain or escaped
        payload (what ``rekey`` need not touch when it already matches)."""
        if not is_envelope(stored):
            return None
        text = stored if isinstance(stored, str) else bytes(stored).decode()
        head = text[len(PREFIX) + 1 : len(PREFIX) + 1 + 3 + KID_MAX + 2]
        parts = head.split(".")
        if len(parts) < 3 or parts[0] != VERSION:
            return None
        return parts[1], parts[2]

    def wanted(self) -> tuple[str | None, str]:
        """``(compression code or None, key id or "")`` that ``seal`` writes now."""
        return (
            None if self.compress is None else _CODE[self.compress],
            "" if self.keyring is None else self.keyring.active,
        )

    @staticmethod
    def _corrupt(where: Where, why: str, kid: str = "") -> StoreCorrupt:
        key = f" (key id {kid!r})" if kid else ""
        return StoreCorrupt(
            where.session_id,
            f"{where.describe()}: sealed payload{key} does not open: {why}",
            sequence=where.sequence,
            kind="undecodable",
        )


def _has_key(text: str) -> bool:
    """Whether the JSON object ``text`` has a top-level ``$sealed`` key (parsed only when the
    name occurs at all)."""
    if '"$sealed"' not in text:
        return False
    value = from_json(text)
    return needs_escape(value)


def plain_text(text: str) -> str:
    """The stored form of a plain payload's JSON text (escaped when it must be)."""
    return escaped(text) if text.startswith("{") and _has_key(text) else text


def dump(value: Any) -> str:
    return to_json(value).decode()


def build(compress: Any = None, keys: Any = None, active_key: Any = None) -> Sealer | None:
    """The ``Sealer`` of ``open_store``'s options (None for neither): ``compress`` is
    ``zstd``, ``zlib``, ``none`` (or True for the best there is); ``keys`` is ``env:NAME``,
    ``file:PATH`` or a ``Keyring``; ``active_key`` picks the key that seals new writes."""
    if isinstance(compress, str):
        compress = compress.strip().lower()
        compress = {"": None, "none": None, "off": None, "false": None, "0": None}.get(
            compress, compress
        )
        if compress in ("on", "true", "1", "auto"):
            compress = True
    if compress is True:
        compress = "zstd"  # zlib when zstandard is missing (Sealer)
    elif compress is False:
        compress = None
    keyring: Keyring | None
    if keys is None or keys == "":
        if active_key:
            raise StoreConfigError("store option active_key needs keys=env:NAME or file:PATH")
        keyring = None
    elif isinstance(keys, Keyring):
        keyring = keys if not active_key else Keyring(keys.keys, str(active_key))
    elif isinstance(keys, str):
        keyring = Keyring.load(keys.strip(), str(active_key) if active_key else None)
    else:
        raise StoreConfigError(
            f"store option keys must be env:NAME, file:PATH or a Keyring, not {type(keys).__name__}"
        )
    if compress is None and keyring is None:
        return None
    return Sealer(compress, keyring)
