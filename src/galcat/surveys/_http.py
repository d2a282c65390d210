"""Shared plumbing of the archive clients: HTTP with retries and back-off, an
on-disk request cache and response validation (shards: `galcat.sharding.assign_shards`).

Every archive request of galcat goes through one :class:`ArchiveSession` (a
:class:`requests.Session`). astroquery builds the requests (SkyServer SQL,
MAST portal calls, SDSS frame links) and sends them through this session, so
that one layer, the same for every survey, does:

- **retries with exponential back-off** on time-outs, dropped connections,
  HTTP 5xx and 429 (``archive.retries``, ``archive.backoff_s``,
  ``archive.backoff_max_s``; a ``Retry-After`` header is honoured up to the
  cap). A 4xx is not retried: it is a clear error naming the URL;
- **an on-disk cache** keyed by the request (method, URL, query parameters,
  body and ``Range`` header, hashed with SHA-256) under ``archive.cache_dir``.
  A shard that failed part-way resumes without refetching what it has. Data
  products (FITS files) are cached until deleted; query answers (SQL, MAST
  portal) expire after ``archive.query_cache_ttl_hours`` so that a nightly run
  sees new objects while a rerun within the night reuses them;
- **validation** before anything is cached: an HTML page where data was
  expected, a truncated or corrupt FITS file, an empty body or a JSON error is
  an :class:`ArchiveError` that names the object (or query) and the URL.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import logging
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from requests.structures import CaseInsensitiveDict

from galcat import __version__

__all__ = [
    "ArchiveError",
    "ArchiveSession",
    "EmptyResultError",
    "HTTPSettings",
    "RemoteFITS",
    "check_fits_bytes",
    "open_fits_bytes",
    "session_for",
]

log = logging.getLogger("galcat.archive")

#: Statuses worth another try: the archive is busy or briefly broken.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
FITS_BLOCK = 2880


class ArchiveError(RuntimeError):
    """An archive request failed, or its answer is not what was asked for."""


class EmptyResultError(ArchiveError):
    """A query matched no object: never an empty shard."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class HTTPSettings:
    """Transport settings, from the ``archive`` section of the config."""

    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    cache_dir: str | None = "archive_cache"
    query_cache_ttl_hours: float = 12.0
    max_download_mb: float = 2048.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HTTPSettings:
        section = dict(config.get("archive") or {})
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in section.items() if k in known})


def session_for(config: Mapping[str, Any], survey: str) -> ArchiveSession:
    """The archive session of ``survey`` (its cache lives in ``cache_dir/survey``)."""
    settings = HTTPSettings.from_config(config)
    cache = None
    if settings.cache_dir:
        cache = Path(settings.cache_dir) / survey
    return ArchiveSession(settings, cache_dir=cache)


# --------------------------------------------------------------------------- cache


def request_key(method: str, url: str, params: Any = None, data: Any = None,
                headers: Mapping[str, str] | None = None) -> str:
    """SHA-256 of what identifies a request: method, URL, params, body, Range."""
    h = hashlib.sha256()
    h.update(method.upper().encode())
    h.update(b"\0" + url.encode())
    if params:
        items = params.items() if isinstance(params, Mapping) else params
        h.update(b"\0" + json.dumps(sorted((str(k), str(v)) for k, v in items)).encode())
    if data:
        if isinstance(data, Mapping):
            data = json.dumps(sorted((str(k), str(v)) for k, v in data.items()))
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        h.update(b"\0" + _canonical_body(str(data)).encode())
    rng = (headers or {}).get("Range")
    if rng:
        h.update(b"\0range=" + rng.encode())
    return h.hexdigest()


def _canonical_body(body: str) -> str:
    """A MAST portal body without its random ``cacheBreaker``, so that it can be cached."""
    if not body.startswith("request="):
        return body
    from urllib.parse import unquote

    try:
        payload = json.loads(unquote(body[len("request="):]))
    except ValueError:
        return body
    if isinstance(payload, dict):
        payload.pop("cacheBreaker", None)
        return "request=" + json.dumps(payload, sort_keys=True)
    return body


class DiskCache:
    """Bodies and a little metadata per request key; written atomically."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.root / key[:2]
        return d / f"{key}.body", d / f"{key}.json"

    def get(self, key: str, ttl_s: float | None = None) -> tuple[bytes, dict] | None:
        body, meta = self._paths(key)
        if not (body.exists() and meta.exists()):
            return None
        info = json.loads(meta.read_text())
        if ttl_s is not None and time.time() - info.get("fetched_at", 0) > ttl_s:
            return None
        return body.read_bytes(), info

    def path(self, key: str) -> Path | None:
        body, meta = self._paths(key)
        return body if body.exists() and meta.exists() else None

    def put(self, key: str, content: bytes | Path, info: dict) -> Path:
        body, meta = self._paths(key)
        body.parent.mkdir(parents=True, exist_ok=True)
        tmp = body.parent / f".{body.name}.{uuid.uuid4().hex[:8]}"
        if isinstance(content, Path):
            os.replace(content, tmp)
        else:
            tmp.write_bytes(content)
        os.replace(tmp, body)
        info = {**info, "fetched_at": time.time(), "galcat_version": __version__}
        tmp_meta = meta.parent / f".{meta.name}.{uuid.uuid4().hex[:8]}"
        tmp_meta.write_text(json.dumps(info))
        os.replace(tmp_meta, meta)
        return body


# --------------------------------------------------------------------------- validation


def _snippet(content: bytes, n: int = 160) -> str:
    text = content[:n].decode("utf-8", "replace")
    return " ".join(text.split())


def looks_like_html(content: bytes, content_type: str | None = None) -> bool:
    if content_type and "html" in content_type.lower():
        return True
    head = content[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def decompress(content: bytes, *, what: str, url: str) -> bytes:
    """bzip2/gzip bodies decompressed; a truncated stream is a clear error."""
    try:
        if content[:3] == b"BZh":
            return bz2.decompress(content)
        if content[:2] == b"\x1f\x8b":
            return gzip.decompress(content)
    except (OSError, EOFError, ValueError) as exc:
        raise ArchiveError(
            f"{what}: the file from {url} is truncated or corrupt ({exc}); "
            "it was not cached, a rerun fetches it again"
        ) from exc
    return content


def check_fits_bytes(raw: bytes, *, what: str, url: str) -> None:
    """Raise unless ``raw`` is a complete FITS file (every HDU's data present)."""
    if not raw.startswith(b"SIMPLE  ="):
        kind = "an HTML page" if looks_like_html(raw) else f"not FITS: {_snippet(raw)!r}"
        raise ArchiveError(f"{what}: {url} returned {kind}")
    pos = 0
    n_hdu = 0
    while pos < len(raw):
        header_end, header = _scan_header(raw, pos)
        if header_end is None:
            if n_hdu and not raw[pos:].strip(b"\0 "):
                break  # trailing padding
            raise ArchiveError(
                f"{what}: the FITS file from {url} is truncated (header of HDU {n_hdu} "
                f"has no END card; {len(raw)} bytes received)"
            )
        size = _data_size(header)
        end = header_end + _padded(size)
        if header_end + size > len(raw):
            raise ArchiveError(
                f"{what}: the FITS file from {url} is truncated: HDU {n_hdu} needs "
                f"{header_end + size} bytes, {len(raw)} received"
            )
        pos = end
        n_hdu += 1


def open_fits_bytes(content: bytes, *, what: str, url: str):
    """Validated :class:`astropy.io.fits.HDUList` from (possibly compressed) bytes."""
    from astropy.io import fits

    raw = decompress(content, what=what, url=url)
    check_fits_bytes(raw, what=what, url=url)
    return fits.HDUList.fromstring(raw)


def _padded(n: int) -> int:
    return int(math.ceil(n / FITS_BLOCK) * FITS_BLOCK)


def _scan_header(raw: bytes, start: int) -> tuple[int | None, dict]:
    """End offset (block-aligned) and the cards needed for sizes, or (None, {})."""
    cards: dict[str, str] = {}
    pos = start
    while pos + FITS_BLOCK <= len(raw):
        block = raw[pos:pos + FITS_BLOCK]
        for i in range(0, FITS_BLOCK, 80):
            card = block[i:i + 80].decode("ascii", "replace")
            key = card[:8].strip()
            if key == "END":
                return pos + FITS_BLOCK, cards
            if card[8:10] == "= ":
                cards[key] = card[10:].split("/")[0].strip().strip("'").strip()
        pos += FITS_BLOCK
    return None, {}


def _data_size(cards: Mapping[str, str]) -> int:
    naxis = int(cards.get("NAXIS", 0))
    if naxis == 0:
        return 0
    n = 1
    for i in range(1, naxis + 1):
        n *= int(cards.get(f"NAXIS{i}", 0))
    bitpix = abs(int(cards.get("BITPIX", 8)))
    gcount = int(cards.get("GCOUNT", 1))
    pcount = int(cards.get("PCOUNT", 0))
    return (bitpix // 8) * gcount * (pcount + n)


# --------------------------------------------------------------------------- session


class ArchiveSession(requests.Session):
    """A requests session with retries, back-off, an on-disk cache and validation.

    astroquery classes use it as their ``_session``; galcat's own downloads call
    :meth:`fetch` and :meth:`download`. Use :meth:`expecting` to say what the
    next requests must return and what they are for, so that errors name it.
    """

    def __init__(self, settings: HTTPSettings | None = None, cache_dir: Path | None = None):
        super().__init__()
        self.settings = settings or HTTPSettings()
        self.cache = DiskCache(cache_dir) if cache_dir is not None else None
        self.headers["User-Agent"] = f"galcat/{__version__} ({self.headers['User-Agent']})"
        self._expect: tuple[str, str, float | None] = ("any", "archive request", None)
        #: (method, url, outcome) of every request sent, for logs and tests.
        self.history: list[tuple[str, str, str]] = []
        self.sleep: Callable[[float], None] = time.sleep

    # -- context -------------------------------------------------------------------
    @contextmanager
    def expecting(self, kind: str, what: str, *, ttl_hours: float | None = None) -> Iterator[None]:
        """Requests inside must return ``kind`` (csv, json, fits, any); ``what`` names them.

        ``ttl_hours`` bounds the age of a cached answer (None: forever).
        """
        old = self._expect
        ttl = None if ttl_hours is None else ttl_hours * 3600.0
        self._expect = (kind, what, ttl)
        try:
            yield
        finally:
            self._expect = old

    # -- requests.Session API ---------------------------------------------------------
    def request(self, method, url, params=None, data=None, headers=None, **kwargs):  # noqa: D102
        kind, what, ttl = self._expect
        kwargs.pop("timeout", None)  # ours, from the config, wins over astroquery's
        kwargs.pop("stream", None)
        merged_headers = dict(headers or {})
        key = request_key(method, url, params, data, merged_headers)
        if self.cache is not None:
            hit = self.cache.get(key, ttl)
            if hit is not None:
                self.history.append((method.upper(), url, "cache"))
                return _response_from_cache(hit[0], hit[1], method, url)
        response = self._send(method, url, params=params, data=data, headers=merged_headers,
                              what=what, **kwargs)
        content = response.content
        self.validate(content, response.headers.get("Content-Type"), kind=kind, what=what,
                      url=response.url or url)
        if self.cache is not None and _cacheable(response, content):
            self.cache.put(key, content, {
                "url": response.url or url,
                "status": response.status_code,
                "headers": {k: v for k, v in response.headers.items()
                            if k.lower() in {"content-type", "content-range", "content-length"}},
                "encoding": response.encoding,
            })
        return response

    def _wait_to_retry(self, attempt: int, attempts: int, *, what: str, last: str, url: str,
                       retry_after: float | None = None) -> None:
        """Exponential back-off before retry ``attempt`` (1-based), at least the server's
        Retry-After when it sent one, never over ``archive.backoff_max_s``."""
        s = self.settings
        delay = min(s.backoff_s * 2 ** (attempt - 1), s.backoff_max_s)
        if retry_after is not None:
            delay = min(max(delay, retry_after), s.backoff_max_s)
        log.warning("%s: %s on %s; retry %d/%d in %.1f s",
                    what, last, url, attempt, attempts - 1, delay)
        self.sleep(delay)

    def _send(self, method: str, url: str, *, what: str, **kwargs) -> requests.Response:
        s = self.settings
        attempts = int(s.retries) + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self._wait_to_retry(attempt, attempts, what=what, last=last, url=url,
                                    retry_after=getattr(self, "_retry_after", None))
            self._retry_after = None
            try:
                response = super().request(method, url, timeout=s.timeout_s, **kwargs)
            except requests.Timeout as exc:
                last = f"timed out after {s.timeout_s:g} s ({type(exc).__name__})"
                self.history.append((method.upper(), url, "timeout"))
                continue
            except requests.ConnectionError as exc:
                last = f"connection failed ({exc.__class__.__name__}: {exc})"
                self.history.append((method.upper(), url, "connection-error"))
                continue
            self.history.append((method.upper(), url, str(response.status_code)))
            if response.status_code in RETRY_STATUSES or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                ra = response.headers.get("Retry-After", "")
                self._retry_after = float(ra) if ra.replace(".", "", 1).isdigit() else None
                continue
            if response.status_code >= 400:
                raise ArchiveError(
                    f"{what}: HTTP {response.status_code} from {response.url or url}: "
                    f"{_snippet(response.content)!r}"
                )
            return response
        raise _gave_up(what, attempts, last, url)

    # -- validation -------------------------------------------------------------------
    @staticmethod
    def validate(content: bytes, content_type: str | None, *, kind: str, what: str,
                 url: str) -> None:
        if kind == "raw":
            return
        if kind != "html" and looks_like_html(content, content_type):
            raise ArchiveError(
                f"{what}: {url} returned an HTML page instead of {kind} data: "
                f"{_snippet(content)!r}"
            )
        if kind in {"csv", "json", "fits"} and not content:
            raise ArchiveError(f"{what}: {url} returned an empty body")
        if kind == "json":
            try:
                payload = json.loads(content)
            except ValueError as exc:
                raise ArchiveError(f"{what}: {url} returned invalid JSON ({exc})") from exc
            if isinstance(payload, dict) and payload.get("status") == "ERROR":
                raise ArchiveError(f"{what}: {url} answered ERROR: {payload.get('msg', payload)}")
        elif kind == "fits":
            raw = decompress(content, what=what, url=url)
            check_fits_bytes(raw, what=what, url=url)

    # -- galcat's own downloads -------------------------------------------------------
    def fetch(self, url: str, *, what: str, kind: str = "fits", params=None,
              headers: Mapping[str, str] | None = None, ttl_hours: float | None = None,
              cache: bool = True) -> requests.Response:
        """GET ``url`` with retries, validation and (unless ``cache=False``) the cache."""
        with self.expecting(kind, what, ttl_hours=ttl_hours):
            if cache:
                return self.get(url, params=params, headers=dict(headers or {}))
            saved, self.cache = self.cache, None
            try:
                return self.get(url, params=params, headers=dict(headers or {}))
            finally:
                self.cache = saved

    def download(self, url: str, *, what: str, kind: str = "fits") -> Path:
        """Stream a (large) file into the cache and return its path.

        The body is validated (complete FITS, or a FITS inside gzip/bzip2) before
        it is moved into the cache, so a partial download never poisons it.
        Without a cache directory the file goes to a temporary directory.
        """
        key = request_key("GET", url)
        if self.cache is not None:
            hit = self.cache.path(key)
            if hit is not None:
                self.history.append(("GET", url, "cache"))
                return hit
            tmp_dir = self.cache.root / "partial"
        else:
            import tempfile

            tmp_dir = Path(tempfile.mkdtemp(prefix="galcat-dl-"))
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{key}.{uuid.uuid4().hex[:8]}"
        limit = self.settings.max_download_mb * 1024 * 1024
        s = self.settings
        attempts = int(s.retries) + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self._wait_to_retry(attempt, attempts, what=what, last=last, url=url)
            try:
                with requests.Session.request(self, "GET", url, stream=True,
                                              timeout=s.timeout_s) as r:
                    self.history.append(("GET", url, str(r.status_code)))
                    if r.status_code in RETRY_STATUSES or r.status_code >= 500:
                        last = f"HTTP {r.status_code}"
                        continue
                    if r.status_code >= 400:
                        raise ArchiveError(f"{what}: HTTP {r.status_code} from {url}")
                    size = int(r.headers.get("Content-Length") or 0)
                    if size > limit:
                        raise ArchiveError(
                            f"{what}: {url} is {size / 2**20:.0f} MiB, over "
                            f"archive.max_download_mb = {s.max_download_mb:g}"
                        )
                    head = b""
                    n = 0
                    with open(tmp, "wb") as fh:
                        for chunk in r.iter_content(chunk_size=1 << 20):
                            if len(head) < 512:
                                head += chunk[:512]
                            n += len(chunk)
                            if n > limit:
                                raise ArchiveError(
                                    f"{what}: {url} exceeds archive.max_download_mb = "
                                    f"{s.max_download_mb:g}"
                                )
                            fh.write(chunk)
                    if looks_like_html(head, r.headers.get("Content-Type")):
                        raise ArchiveError(
                            f"{what}: {url} returned an HTML page instead of {kind} data: "
                            f"{_snippet(head)!r}"
                        )
                    if size and n != size:
                        last = f"connection closed after {n} of {size} bytes"
                        continue
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                self.history.append(("GET", url, "timeout"))
                continue
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            try:
                if kind == "fits":
                    _check_fits_file(tmp, what=what, url=url)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if self.cache is not None:
                return self.cache.put(key, tmp, {"url": url, "status": 200, "headers": {}})
            return tmp
        tmp.unlink(missing_ok=True)
        raise _gave_up(what, attempts, last, url)


def _gave_up(what: str, attempts: int, last: str, url: str) -> ArchiveError:
    return ArchiveError(
        f"{what}: gave up after {attempts} attempts ({last}) on {url}; "
        "raise archive.retries or archive.timeout_s, or try again later"
    )


def _check_fits_file(path: Path, *, what: str, url: str) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b" or magic == b"BZh":
        opener = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open
        try:
            with opener(path, "rb") as fh:
                raw = fh.read()
        except (OSError, EOFError, ValueError) as exc:
            raise ArchiveError(f"{what}: the file from {url} is truncated or corrupt ({exc})") \
                from exc
        check_fits_bytes(raw, what=what, url=url)
        return
    # Uncompressed: walk the headers without reading the data.
    size = path.stat().st_size
    with open(path, "rb") as fh:
        first = fh.read(9)
        if first != b"SIMPLE  =":
            fh.seek(0)
            raw = fh.read(512)
            kind = "an HTML page" if looks_like_html(raw) else f"not FITS: {_snippet(raw)!r}"
            raise ArchiveError(f"{what}: {url} returned {kind}")
        pos = 0
        n_hdu = 0
        while pos < size:
            fh.seek(pos)
            buf = b""
            end = None
            while end is None:
                block = fh.read(FITS_BLOCK)
                if len(block) < FITS_BLOCK:
                    if n_hdu and not (buf + block).strip(b"\0 "):
                        return
                    raise ArchiveError(
                        f"{what}: the FITS file from {url} is truncated (header of HDU "
                        f"{n_hdu})"
                    )
                buf += block
                end, cards = _scan_header(buf, 0)
            data = _data_size(cards)
            if pos + end + data > size:
                raise ArchiveError(
                    f"{what}: the FITS file from {url} is truncated: HDU {n_hdu} needs "
                    f"{pos + end + data} bytes, {size} received"
                )
            pos += end + _padded(data)
            n_hdu += 1


def _cacheable(response: requests.Response, content: bytes) -> bool:
    """MAST's long-polling 'EXECUTING' answers must be asked again, never cached."""
    if response.status_code not in (200, 206):
        return False
    ctype = (response.headers.get("Content-Type") or "").lower()
    if "json" in ctype or content[:1] in (b"{", b"["):
        try:
            payload = json.loads(content)
        except ValueError:
            return False
        if isinstance(payload, dict) and payload.get("status") in {"EXECUTING", "ERROR"}:
            return False
    return True


def _response_from_cache(content: bytes, info: dict, method: str, url: str) -> requests.Response:
    response = requests.Response()
    response.status_code = int(info.get("status", 200))
    response._content = content
    response.headers = CaseInsensitiveDict(info.get("headers", {}))
    response.url = info.get("url", url)
    response.encoding = info.get("encoding") or "utf-8"
    response.request = requests.Request(method, url).prepare()
    response.reason = "OK (galcat cache)"
    return response


# --------------------------------------------------------------------------- remote FITS


@dataclass
class HDUInfo:
    index: int
    name: str
    header: Any  # astropy.io.fits.Header
    header_offset: int
    data_offset: int
    data_size: int


class RemoteFITS:
    """Read headers, whole HDUs or pixel sections of a remote, uncompressed FITS file
    with HTTP ``Range`` requests, without downloading the whole file.

    Used for JADES mosaics (GB-sized) and catalogues. If the server ignores
    ``Range`` (answers 200 with the whole body), the file is downloaded once into
    the cache instead (up to ``archive.max_download_mb``) and read locally.
    """

    CHUNK = FITS_BLOCK * 16

    def __init__(self, session: ArchiveSession, url: str, *, what: str,
                 use_range: bool = True):
        self.session = session
        self.url = url
        self.what = what
        self.use_range = use_range
        self._local: Path | None = None
        self._hdus: list[HDUInfo] | None = None
        #: Size of the remote file in bytes, from ``Content-Range`` (None: unknown).
        self.size: int | None = None

    # -- low level ------------------------------------------------------------------
    def _range(self, start: int, stop: int, *, cache: bool = True) -> bytes:
        """Bytes ``[start, stop)`` of the file."""
        if self._local is not None:
            self.size = self._local.stat().st_size
            with open(self._local, "rb") as fh:
                fh.seek(start)
                return fh.read(stop - start)
        if not self.use_range:
            self._go_local()
            return self._range(start, stop)
        if self.size is not None:
            stop = min(stop, self.size)
            if start >= stop:
                return b""
        response = self.session.fetch(
            self.url, what=self.what, kind="raw", cache=cache,
            headers={"Range": f"bytes={start}-{stop - 1}"},
        )
        total = (response.headers.get("Content-Range") or "").rpartition("/")[2]
        if total.isdigit():
            self.size = int(total)
        if response.status_code == 200:
            log.warning("%s: %s ignores HTTP Range; downloading the whole file once",
                        self.what, self.url)
            self._go_local()
            return self._range(start, stop)
        content = response.content
        if looks_like_html(content, response.headers.get("Content-Type")):
            raise ArchiveError(f"{self.what}: {self.url} returned an HTML page, not FITS bytes")
        return content

    def _go_local(self) -> None:
        if self._local is None:
            self._local = self.session.download(self.url, what=self.what, kind="fits")

    # -- structure ------------------------------------------------------------------
    def hdus(self) -> list[HDUInfo]:
        if self._hdus is not None:
            return self._hdus
        from astropy.io import fits

        hdus: list[HDUInfo] = []
        pos = 0
        index = 0
        while self.size is None or pos < self.size:
            buf = self._range(pos, pos + self.CHUNK)
            if index == 0 and not buf.startswith(b"SIMPLE  ="):
                raise ArchiveError(f"{self.what}: {self.url} is not a FITS file "
                                   f"({_snippet(buf)!r})")
            if index > 0 and not buf.startswith(b"XTENSION"):
                break  # end of file, or padding after the last HDU
            end, cards = _scan_header(buf, 0)
            while end is None:
                more = self._range(pos + len(buf), pos + len(buf) + self.CHUNK)
                if not more:
                    raise ArchiveError(f"{self.what}: {self.url} ends inside the header of "
                                       f"HDU {index}")
                buf += more
                end, cards = _scan_header(buf, 0)
            header = fits.Header.fromstring(buf[:end].decode("ascii", "replace"))
            size = _data_size(cards)
            name = str(header.get("EXTNAME", "PRIMARY" if index == 0 else "")).strip().upper()
            hdus.append(HDUInfo(index, name, header, pos, pos + end, size))
            pos += end + _padded(size)
            index += 1
        self._hdus = hdus
        return hdus

    def hdu_info(self, name: str | int) -> HDUInfo:
        for info in self.hdus():
            if (isinstance(name, int) and info.index == name) or (
                isinstance(name, str) and info.name == name.upper()
            ):
                return info
        names = [h.name for h in self.hdus()]
        raise ArchiveError(f"{self.what}: {self.url} has no HDU {name!r}; it has {names}")

    def read_hdu(self, name: str | int):
        """The whole HDU (header and data) as an astropy HDU."""
        from astropy.io import fits

        info = self.hdu_info(name)
        raw = self._range(info.header_offset, info.data_offset + _padded(info.data_size))
        if len(raw) < info.data_offset - info.header_offset + info.data_size:
            raise ArchiveError(f"{self.what}: HDU {info.name!r} of {self.url} is truncated")
        if info.index == 0:
            return fits.HDUList.fromstring(raw)[0]
        primary = fits.PrimaryHDU().header.tostring().encode("ascii")
        hdul = fits.HDUList.fromstring(primary + raw)
        return hdul[1]

    def read_section(self, name: str | int, rows: slice, cols: slice) -> np.ndarray:
        """Pixels ``[rows, cols]`` of a 2-D image HDU (physical values, float64)."""
        info = self.hdu_info(name)
        h = info.header
        if h.get("NAXIS") != 2:
            raise ArchiveError(f"{self.what}: HDU {info.name} of {self.url} is not a 2-D image")
        nx, ny = int(h["NAXIS1"]), int(h["NAXIS2"])
        bitpix = int(h["BITPIX"])
        dtype = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}[bitpix]
        itemsize = abs(bitpix) // 8
        r0, r1, _ = rows.indices(ny)
        c0, c1, _ = cols.indices(nx)
        if r1 <= r0 or c1 <= c0:
            return np.empty((max(0, r1 - r0), max(0, c1 - c0)))
        start = info.data_offset + r0 * nx * itemsize
        stop = info.data_offset + r1 * nx * itemsize
        raw = self._range(start, stop, cache=False)
        if len(raw) != stop - start:
            raise ArchiveError(
                f"{self.what}: short read of rows {r0}:{r1} of {info.name} from {self.url} "
                f"({len(raw)} of {stop - start} bytes)"
            )
        block = np.frombuffer(raw, dtype=dtype).reshape(r1 - r0, nx)[:, c0:c1]
        out = block.astype(np.float64)
        scale, zero = float(h.get("BSCALE", 1.0)), float(h.get("BZERO", 0.0))
        if scale != 1.0 or zero != 0.0:
            out = out * scale + zero
        return out


def warn_partial(survey: str, names: list[str]) -> None:
    """One warning for the objects of a batch that lie partly off their image.

    ``names`` holds ``"<object_id> (<band>)"`` entries; they are grouped by object.
    """
    if not names:
        return
    by_object: dict[str, list[str]] = {}
    for name in names:
        oid, _, band = name.partition(" (")
        by_object.setdefault(oid, []).append(band.rstrip(")"))
    items = [f"{oid} ({', '.join(b for b in bands if b)})" for oid, bands in by_object.items()]
    shown = "; ".join(items[:10]) + (" ..." if len(items) > 10 else "")
    warnings.warn(
        f"{survey}: {len(by_object)} object(s) lie partly off their image; the missing "
        f"pixels are NaN with mask=True: {shown}",
        stacklevel=3,
    )


def bytes_io(content: bytes) -> io.BytesIO:
    return io.BytesIO(content)
