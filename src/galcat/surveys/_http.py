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
  an :class:`ArchiveError` that names the object (or query) and the URL. An
  HTML page is an :class:`HTMLPageError` carrying the page's own title and
  message (an archive's error page says what went wrong; its boilerplate does not);
- **bounded memory for large files**: :meth:`ArchiveSession.download` and
  :class:`RemoteFITS` stream to disk in 1 MiB blocks, checking the announced size
  against ``archive.max_download_mb`` before reading any of the body.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import html
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
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import requests
from requests.structures import CaseInsensitiveDict

from galcat import __version__
from galcat.config import defaults, settings

__all__ = [
    "ArchiveError",
    "ArchiveSession",
    "EmptyResultError",
    "HTMLPageError",
    "HTTPSettings",
    "HTTPStatusError",
    "IncompleteBody",
    "RemoteFITS",
    "check_fits_bytes",
    "html_page_text",
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


class HTMLPageError(ArchiveError):
    """An HTML page came back where data was expected (an archive's error page).

    Attributes
    ----------
    title : str
        The page's ``<title>``.
    message : str
        What the page says went wrong: the text of its last heading (where error
        pages put the message), else its first 300 characters of text.
    url : str
    """

    def __init__(self, text: str, *, title: str, message: str, url: str):
        super().__init__(text)
        self.title = title
        self.message = message
        self.url = url


class HTTPStatusError(ArchiveError):
    """An HTTP 4xx answer (not retried); ``status`` is its code."""

    def __init__(self, text: str, *, status: int):
        super().__init__(text)
        self.status = status


# --------------------------------------------------------------------------- settings


_ARCHIVE = defaults("archive")


@dataclass(frozen=True)
class HTTPSettings:
    """Transport settings, from the ``archive`` section of the config (defaults: its schema)."""

    timeout_s: float = _ARCHIVE["timeout_s"]
    retries: int = _ARCHIVE["retries"]
    backoff_s: float = _ARCHIVE["backoff_s"]
    backoff_max_s: float = _ARCHIVE["backoff_max_s"]
    cache_dir: str | None = _ARCHIVE["cache_dir"]
    query_cache_ttl_hours: float = _ARCHIVE["query_cache_ttl_hours"]
    max_download_mb: float = _ARCHIVE["max_download_mb"]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HTTPSettings:
        section = settings(config, "archive")
        return cls(**{f: section[f] for f in cls.__dataclass_fields__ if f in section})


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


class _PageText(HTMLParser):
    """Title, headings and visible text of an HTML page."""

    HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.headings: list[list[str]] = []
        self.text: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in {"br", "hr", "meta", "link", "img", "input"}:
            return  # void elements
        self._stack.append(tag)
        if tag in self.HEADINGS:
            self.headings.append([])

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass

    def handle_data(self, data):
        if any(t in {"script", "style"} for t in self._stack):
            return
        if "title" in self._stack:
            self.title.append(data)
            return
        self.text.append(data)
        if self.headings and any(t in self.HEADINGS for t in self._stack):
            self.headings[-1].append(data)


def html_page_text(content: bytes) -> tuple[str, str]:
    """(title, message) of an HTML page: its title, and the text of its last heading
    (where error pages such as SkyServer's put the message), else its first 300
    characters of text. Whitespace is collapsed and entities decoded."""
    parser = _PageText()
    try:
        parser.feed(content[:200_000].decode("utf-8", "replace"))
        parser.close()
    except (AssertionError, ValueError):  # a page too broken to parse: show raw text
        return "", _snippet(content, 300)

    def clean(parts: list[str]) -> str:
        return " ".join(html.unescape(" ".join(parts)).split())

    title = clean(parser.title)
    headings = [h for h in (clean(x) for x in parser.headings) if h]
    message = headings[-1] if headings else clean(parser.text)[:300]
    return title, message


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
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                # urllib3 2 reports a body cut short as a ChunkedEncodingError (a
                # ProtocolError underneath), which is not a ConnectionError
                last = f"connection failed ({exc.__class__.__name__}: {exc})"
                self.history.append((method.upper(), url, "connection-error"))
                continue
            self.history.append((method.upper(), url, str(response.status_code)))
            if response.status_code in RETRY_STATUSES or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                ra = response.headers.get("Retry-After", "")
                self._retry_after = float(ra) if ra.replace(".", "", 1).isdigit() else None
                response.close()  # a streamed answer holds its connection until closed
                continue
            if response.status_code >= 400:
                raise _status_error(response, what=what, url=url)
            return response
        raise _gave_up(what, attempts, last, url)

    # -- validation -------------------------------------------------------------------
    @staticmethod
    def validate(content: bytes, content_type: str | None, *, kind: str, what: str,
                 url: str) -> None:
        if kind == "raw":
            return
        if kind != "html" and looks_like_html(content, content_type):
            title, message = html_page_text(content)
            raise HTMLPageError(
                f"{what}: {url} returned an HTML page instead of {kind} data "
                f"(title {title!r}): {message!r}", title=title, message=message, url=url)
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

    def open_stream(self, url: str, *, what: str,
                    headers: Mapping[str, str] | None = None) -> requests.Response:
        """GET ``url`` as an open stream (the caller closes it), with retries.

        Time-outs, dropped connections, HTTP 5xx and 429 are retried with back-off; a
        4xx is an :class:`HTTPStatusError`. Redirects are followed (``response.history``
        says whether there was one). Nothing is cached and no body is read.
        """
        return self._send("GET", url, what=what, headers=dict(headers or {}), stream=True)

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
        attempts = int(self.settings.retries) + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self._wait_to_retry(attempt, attempts, what=what, last=last, url=url)
            try:
                with self.open_stream(url, what=what) as response:
                    return self.save_stream(response, url=url, what=what, kind=kind)
            except IncompleteBody as exc:
                last = str(exc)
        raise _gave_up(what, attempts, last, url)

    def save_stream(self, response: requests.Response, *, url: str, what: str,
                    kind: str = "fits") -> Path:
        """Write an open 200 answer to disk in 1 MiB blocks; its path (in the cache).

        The announced size (``Content-Length``) is checked against
        ``archive.max_download_mb`` before any of the body is read, and the bytes
        received are counted against it too. The file is validated before it is
        moved into the cache under the key of a plain GET of ``url`` (where
        :meth:`download` finds it). A connection that breaks or closes early is an
        :class:`IncompleteBody` (the caller may try again); the partial file is removed.
        """
        s = self.settings
        limit = s.max_download_mb * 1024 * 1024
        size = int(response.headers.get("Content-Length") or 0)
        if size > limit:
            raise ArchiveError(
                f"{what}: {url} is {size / 2**20:.0f} MiB, over archive.max_download_mb = "
                f"{s.max_download_mb:g}; raise it, or use a server that answers HTTP Range"
            )
        key = request_key("GET", url)
        if self.cache is not None:
            tmp_dir = self.cache.root / "partial"
        else:
            import tempfile

            tmp_dir = Path(tempfile.mkdtemp(prefix="galcat-dl-"))
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{key}.{uuid.uuid4().hex[:8]}"
        try:
            head = b""
            n = 0
            try:
                with open(tmp, "wb") as fh:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        if len(head) < 65536:  # enough of an error page to quote it
                            head += chunk[: 65536 - len(head)]
                        n += len(chunk)
                        if n > limit:
                            raise ArchiveError(f"{what}: {url} exceeds archive.max_download_mb "
                                               f"= {s.max_download_mb:g}")
                        fh.write(chunk)
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                self.history.append(("GET", url, "broken"))
                raise IncompleteBody(f"connection broke after {n} bytes ({exc})") from exc
            if looks_like_html(head, response.headers.get("Content-Type")):
                title, message = html_page_text(head)
                raise HTMLPageError(f"{what}: {url} returned an HTML page instead of {kind} "
                                    f"data (title {title!r}): {message!r}",
                                    title=title, message=message, url=url)
            if size and n != size:
                raise IncompleteBody(f"connection closed after {n} of {size} bytes")
            if kind == "fits":
                _check_fits_file(tmp, what=what, url=url)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.cache is not None:
            return self.cache.put(key, tmp, {"url": url, "status": 200, "headers": {}})
        return tmp


class IncompleteBody(ArchiveError):
    """A streamed body ended early or its connection broke (worth another try)."""


def _status_error(response: requests.Response, *, what: str, url: str) -> HTTPStatusError:
    """A 4xx answer as an error quoting the server's own message."""
    content = response.content[:200_000]
    if looks_like_html(content, response.headers.get("Content-Type")):
        title, message = html_page_text(content)
        said = message or title
    else:
        said = _snippet(content)
    where = response.url or url
    if len(where) > 200:  # a long GET query string would drown the message
        where = where[:200] + f"... ({len(where)} characters)"
    return HTTPStatusError(f"{what}: HTTP {response.status_code} from {where}: {said!r}",
                           status=response.status_code)


def _read_body(response: requests.Response, n: int, *, what: str, url: str) -> bytes:
    """Exactly ``n`` bytes of a 206 body, never more held in memory than asked for."""
    out = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=1 << 20):
            out += chunk
            if len(out) > n:
                raise ArchiveError(f"{what}: {url} sent more bytes than the {n} asked for "
                                   "(Range not honoured as announced)")
    except (requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError) as exc:
        raise IncompleteBody(f"connection broke after {len(out)} of {n} bytes ({exc})") from exc
    if len(out) < n and looks_like_html(bytes(out[:512]), response.headers.get("Content-Type")):
        title, message = html_page_text(bytes(out))
        raise HTMLPageError(f"{what}: {url} returned an HTML page, not FITS bytes "
                            f"(title {title!r}): {message!r}", title=title, message=message,
                            url=url)
    return bytes(out)


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

    Used for JADES mosaics (GB-sized) and catalogues. The first read is a probe that
    finds out how the server answers a ``Range`` request:

    - **206** (Partial Content): every later read is a ``Range`` request;
    - **a redirect** (e.g. to a cloud copy) followed by 206: later reads go straight to
      the redirect target; if the target later refuses (an expired signed link, any
      4xx), the original URL is probed again, once;
    - **200** (the server ignores ``Range``, directly or after a redirect): the body of
      that same answer is streamed to disk once, in 1 MiB blocks, after its announced
      size has been checked against ``archive.max_download_mb``; it lands in the
      request cache, and every read is then local. Nothing is read into memory whole
      and the file is never downloaded twice.

    Attributes ``range_supported`` (None until probed) and ``redirected_to`` say what
    the probe found. Header reads are cached per byte range; pixel rows are not.
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
        self._target = url
        #: Size of the remote file in bytes, from ``Content-Range`` (None: unknown).
        self.size: int | None = None
        #: True (206), False (200: streamed to disk) or None (not probed yet).
        self.range_supported: bool | None = None
        #: Final URL of a redirect on the probe, where later reads go.
        self.redirected_to: str | None = None

    # -- low level ------------------------------------------------------------------
    def _range(self, start: int, stop: int, *, cache: bool = True) -> bytes:
        """Bytes ``[start, stop)`` of the file."""
        if self._local is None and self.range_supported is None and self.session.cache:
            self._local = self.session.cache.path(request_key("GET", self.url))  # a past 200
        if self._local is not None:
            return self._read_local(start, stop)
        if not self.use_range:
            self._local = self.session.download(self.url, what=self.what, kind="fits")
            return self._read_local(start, stop)
        if self.size is not None:
            stop = min(stop, self.size)
            if start >= stop:
                return b""
        rng = f"bytes={start}-{stop - 1}"
        key = request_key("GET", self.url, headers={"Range": rng})
        store = self.session.cache if cache else None
        hit = store.get(key) if store is not None else None
        if hit is not None:
            self.session.history.append(("GET", self.url, "cache"))
            self._note_size(hit[1].get("headers", {}).get("Content-Range", ""))
            return hit[0]
        data = self._fetch(start, stop, rng)
        if data is None:  # the server ignored Range: the file is local now
            return self._read_local(start, stop)
        if store is not None:
            store.put(key, data, {"url": self.url, "status": 206,
                                  "headers": {"Content-Range": f"bytes {start}-{stop - 1}/"
                                                              f"{self.size or '*'}"}})
        return data

    def _read_local(self, start: int, stop: int) -> bytes:
        self.size = self._local.stat().st_size
        with open(self._local, "rb") as fh:
            fh.seek(start)
            return fh.read(max(0, stop - start))

    def _note_size(self, content_range: str) -> None:
        total = content_range.rpartition("/")[2]
        if total.isdigit():
            self.size = int(total)

    def _fetch(self, start: int, stop: int, rng: str) -> bytes | None:
        """One ``Range`` request (with retries); None when the file went to disk instead."""
        s = self.session.settings
        attempts = int(s.retries) + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self.session._wait_to_retry(attempt, attempts, what=self.what, last=last,
                                            url=self._target)
            try:
                response = self.session.open_stream(self._target, what=self.what,
                                                    headers={"Range": rng})
            except HTTPStatusError:
                if self._target == self.url:
                    raise
                log.info("%s: the redirect target refused; probing %s again", self.what,
                         self.url)
                self._target = self.url  # e.g. an expired signed link: ask the archive again
                response = self.session.open_stream(self._target, what=self.what,
                                                    headers={"Range": rng})
            with response:
                if response.history and self._target == self.url:
                    self.redirected_to = response.url
                    self._target = response.url
                    log.info("%s: %s redirects to %s", self.what, self.url, response.url)
                if response.status_code == 200:
                    return self._stream_whole(response)
                if response.status_code != 206:
                    raise ArchiveError(f"{self.what}: HTTP {response.status_code} from "
                                       f"{response.url} to a Range request")
                self.range_supported = True
                self._note_size(response.headers.get("Content-Range", ""))
                try:
                    return _read_body(response, stop - start, what=self.what, url=self.url)
                except IncompleteBody as exc:
                    last = str(exc)
        raise _gave_up(self.what, attempts, last, self._target)

    def _stream_whole(self, response: requests.Response) -> None:
        """The server ignored Range: save this very answer (streamed) as the local copy."""
        self.range_supported = False
        log.warning("%s: %s ignores HTTP Range; streaming the whole file to disk once",
                    self.what, response.url)
        try:
            self._local = self.session.save_stream(response, url=self.url, what=self.what,
                                                   kind="fits")
        except IncompleteBody as exc:
            log.warning("%s: %s; downloading it again", self.what, exc)
            self._local = self.session.download(self.url, what=self.what, kind="fits")
        return None

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
