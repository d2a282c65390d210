"""A fake SDSS/MAST archive on 127.0.0.1 answering the real request paths the way the
real services do (each behaviour below is the real one, with its source in
``docs/archives.md``).

Routes:

``/dr{N}/en/tools/search/x_results.aspx`` (SkyServer SQL, as astroquery's ``SDSS.query_sql``
    builds it: ``cmd``, ``format=csv``, ``searchtool=SQL``). The form is read from a POST
    body, else from the query string, as SkyServer's ``ResponseREST`` does. A GET whose
    query string is longer than ``get_cap`` (2048 characters, ASP.NET's default
    ``maxQueryStringLength``; SkyServer has refused GETs from about 2 KB to 9 KB) is
    answered 400 with ASP.NET's message. The SQL runs on :class:`SkyServerDB` (every
    table and column checked against the real CAS schema, WHERE/JOIN/ORDER BY/TOP
    honoured). An SQL error comes back as SkyServer's HTML error page: status 200,
    ``text/html``, title ``Skyserver Error``, the SQL Server message in the page. An
    answer is SkyServer's CSV: ``#Table1``, a header line, the rows.
``GET /sas/...``
    Files of the Science Archive Server (SDSS frames, psField, MaNGA DRPall and cubes),
    with ``Range`` support.
``POST /portal/Mashup/Mashup.asmx/columnsconfig``, ``POST /api/v0/invoke``
    The MAST portal API as astroquery.mast uses it. Every distinct request is first
    answered ``EXECUTING`` (long polling), then ``COMPLETE`` with the real CAOM field
    list and types (as recorded in astroquery's own test data): ``obsid`` declared
    ``string`` while its values are JSON integers.
``GET /api/v0.1/Download/file?uri=mast:...``
    MAST's download API, with ``Range`` support (206 + ``Content-Range``).
``GET /cloud/<path>``
    Where the ``redirect`` behaviour sends a download (as a cloud-hosted copy would).

Files are streamed from disk in 64 KiB blocks, so that the fake's own memory stays
small when a test measures the client's.

Faults and behaviours: :meth:`FakeArchive.add_fault` queues one action per request whose
path and query contain a substring; :meth:`FakeArchive.set_mode` applies an action to
every such request until :meth:`reset`. Actions: ``503`` / ``500`` / ``502`` / ``403``
(that status), ``timeout`` (answer after ``slow_s`` seconds), ``drop`` (close the
connection), ``html`` (200 with an HTML maintenance page), ``truncate`` (half the file,
with a matching Content-Length), ``norange`` (ignore ``Range``: 200 with the whole file),
``redirect`` (302 to ``/cloud/...``), ``empty`` (a CSV with a header and no rows),
``cut`` (announce the whole answer, send half of it and close the connection), ``ok``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.archive.fake_skyserver import SkyServerDB, SQLError, Unsupported

HTML_ERROR = (b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
              b"<body><h1>The archive is down for maintenance</h1></body></html>")

#: ASP.NET's answer to a query string over ``httpRuntime maxQueryStringLength``.
QUERY_STRING_TOO_LONG = (
    "<!DOCTYPE html><html><head><title>The length of the query string for this request "
    "exceeds the configured maxQueryStringLength value.</title></head><body>"
    "<h1>Server Error in '/' Application.</h1><h2><i>The length of the query string for this "
    "request exceeds the configured maxQueryStringLength value.</i></h2>"
    "<b>Exception Details:</b> System.Web.HttpException: The length of the query string for "
    "this request exceeds the configured maxQueryStringLength value.</body></html>"
)
#: Default cap on a GET's query string: ASP.NET's default maxQueryStringLength.
GET_CAP = 2048


def skyserver_error_page(message: str) -> bytes:
    """SkyServer's SQL error page (``ResponseREST.getErrorMessageHTMLresult``)."""
    return ("<html><head>\n<title>Skyserver Error</title>\n</head><body bgcolor=white>\n"
            "<h2>An error occured</h2><H3 BGCOLOR=pink><font color=red><br>"
            f"{escape(message, quote=False)}</font></H3></BODY></HTML>\n").encode()


COLUMNS_CONFIG = {
    "_selected_": {"text": "selected", "type": "boolean", "hidden": True},
    "obs_collection": {"text": "Mission", "vot.datatype": "char", "separator": ";"},
    "provenance_name": {"text": "Provenance Name", "vot.datatype": "char"},
    "instrument_name": {"text": "Instrument", "vot.datatype": "char"},
    "filters": {"text": "Filters", "vot.datatype": "char", "separator": ";"},
    "dataproduct_type": {"text": "Product Type", "vot.datatype": "char"},
    "target_name": {"text": "Target Name", "vot.datatype": "char"},
    "s_ra": {"text": "RA", "vot.datatype": "double"},
    "s_dec": {"text": "Dec", "vot.datatype": "double"},
}

#: The field list (names and declared types) of MAST's ``Mast.Caom.Filtered`` and
#: ``Mast.Caom.Products`` answers, as recorded in astroquery's test data
#: (``astroquery/mast/tests/data/caom.json`` and ``products.json``), plus
#: ``provenance_name`` (the column galcat filters on). Note ``obsid`` / ``obsID``: declared
#: ``string``, sent as JSON integers.
CAOM_FIELDS = [
    ("dataproduct_type", "string"), ("obs_collection", "string"), ("instrument_name", "string"),
    ("project", "string"), ("filters", "string"), ("wavelength_region", "string"),
    ("target_name", "string"), ("target_classification", "string"), ("obs_id", "string"),
    ("s_ra", "float"), ("s_dec", "float"), ("proposal_id", "string"),
    ("proposal_pi", "string"), ("calib_level", "int"), ("t_min", "float"), ("t_max", "float"),
    ("t_exptime", "float"), ("em_min", "float"), ("em_max", "float"), ("obs_title", "string"),
    ("t_obs_release", "float"), ("s_region", "string"), ("jpegURL", "string"),
    ("dataURL", "string"), ("obsid", "string"), ("objID", "string"), ("distance", "float"),
    ("provenance_name", "string"), ("_selected_", "boolean"),
]
PRODUCT_FIELDS = [
    ("obsID", "string"), ("obs_collection", "string"), ("dataproduct_type", "string"),
    ("obs_id", "string"), ("description", "string"), ("type", "string"), ("dataURI", "string"),
    ("productType", "string"), ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"), ("productDocumentationURL", "string"),
    ("project", "string"), ("prvversion", "string"), ("productFilename", "string"),
    ("size", "int"), ("_selected_", "boolean"),
]
BLOCK = 1 << 16


class FakeArchive:
    """Serve ``root`` (made by ``make_fixtures.make_all``) on a random local port."""

    def __init__(self, root: Path, *, slow_s: float = 1.0, get_cap: int = GET_CAP):
        self.root = Path(root)
        self.slow_s = slow_s
        self.get_cap = get_cap
        self.skyserver = SkyServerDB(json.loads((self.root / "skyserver/db.json").read_text()))
        self.portal = json.loads((self.root / "mast/portal.json").read_text())
        self.faults: list[tuple[str, deque]] = []
        self.modes: list[tuple[str, str]] = []
        self.polls: dict[str, int] = {}
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle ----------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeArchive:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.modes.clear()
            self.polls.clear()
            self.log.clear()

    # -- faults and logs ------------------------------------------------------------
    def add_fault(self, match: str, *actions: str) -> None:
        """Answer the next requests containing ``match`` with ``actions``, one each."""
        with self.lock:
            self.faults.append((match, deque(actions)))

    def set_mode(self, match: str, action: str) -> None:
        """Answer every request containing ``match`` with ``action`` (until reset)."""
        with self.lock:
            self.modes.append((match, action))

    def _next_action(self, target: str) -> str:
        with self.lock:
            for match, queue in self.faults:
                if match in target and queue:
                    return queue.popleft()
            for match, action in self.modes:
                if match in target:
                    return action
        return "ok"

    def hits(self, match: str) -> list[dict]:
        with self.lock:
            return [e for e in self.log if match in e["target"]]

    # -- SkyServer SQL ------------------------------------------------------------
    def sql(self, cmd: str) -> tuple[str, bytes]:
        """(content type, body) of SkyServer's answer to ``cmd``."""
        try:
            names, rows = self.skyserver.run(cmd)
        except SQLError as exc:
            return "text/html", skyserver_error_page(str(exc))
        except Unsupported as exc:  # valid SQL this fake cannot evaluate: fail loudly
            return "text/html", skyserver_error_page(f"fake SkyServer cannot evaluate {exc}")
        lines = ["#Table1", ",".join(names)]
        lines += [",".join(_csv(v) for v in row) for row in rows]
        return "text/plain", ("\n".join(lines) + "\n").encode()

    # -- MAST portal ------------------------------------------------------------------
    def invoke(self, request: dict) -> dict:
        service = request.get("service")
        params = request.get("params", {})
        key = json.dumps({k: v for k, v in request.items() if k != "cacheBreaker"},
                         sort_keys=True)
        with self.lock:
            self.polls[key] = self.polls.get(key, 0) + 1
            first = self.polls[key] == 1
        if first:  # MAST's long polling: the query is still running
            return {"status": "EXECUTING", "msg": "", "data": [], "fields": []}
        if service == "Mast.Caom.Filtered":
            rows = self.portal["observations"]
            for flt in params.get("filters", []):
                name, values = flt["paramName"], [str(v).upper() for v in flt.get("values", [])]
                if values:
                    rows = [r for r in rows if any(v in str(r.get(name, "")).upper().split(";")
                                                   for v in values)]
            fields = CAOM_FIELDS
        elif service == "Mast.Caom.Products":
            wanted = set(str(params.get("obsid", "")).split(","))
            rows = [p for p in self.portal["products"] if str(p["obsID"]) in wanted]
            fields = PRODUCT_FIELDS
        else:
            return {"status": "ERROR", "msg": f"unknown service {service}"}
        data = [{name: r.get(name) for name, _ in fields} for r in rows]
        return {"status": "COMPLETE", "msg": "", "data": data,
                "fields": [{"name": n, "type": t} for n, t in fields],
                "paging": {"page": 1, "pageSize": len(rows), "pagesFiltered": 1,
                           "rows": len(rows), "rowsFiltered": len(rows),
                           "rowsTotal": len(rows)}}

    # -- HTTP ---------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command == "HEAD":
                    return
                if getattr(self, "cut_body", False):  # the ``cut`` fault
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def _fault(self, action: str) -> bool:
                """Apply a fault; True if the request has been answered."""
                if action in ("503", "500", "502", "403"):
                    self._send(int(action), b"Service Unavailable" if action != "403" else
                               b"<Error><Code>AccessDenied</Code></Error>", "text/plain")
                    return True
                if action == "timeout":
                    time.sleep(fake.slow_s)
                    try:
                        self._send(503, b"too late", "text/plain")
                    except OSError:
                        pass
                    return True
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return True
                if action == "html":
                    self._send(200, HTML_ERROR, "text/html; charset=utf-8")
                    return True
                self.cut_body = action == "cut"
                return False

            def _serve_file(self, path: Path, action: str):
                if not path.is_file():
                    self._send(404, b"Not Found", "text/plain")
                    return
                size = path.stat().st_size
                if action == "truncate":
                    size = size // 2
                rng = self.headers.get("Range") if action != "norange" else None
                start, stop, status = 0, size, 200
                extra = {"Accept-Ranges": "bytes"} if action != "norange" else {}
                if rng:
                    m = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
                    if not m:
                        self._send(416, b"bad range", "text/plain")
                        return
                    start = int(m.group(1))
                    if start >= size:
                        self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                        return
                    stop = min(int(m.group(2)) + 1 if m.group(2) else size, size)
                    status = 206
                    extra["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(stop - start))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    with open(path, "rb") as fh:
                        fh.seek(start)
                        left = stop - start
                        while left > 0:
                            block = fh.read(min(BLOCK, left))
                            if not block:
                                break
                            self.wfile.write(block)
                            left -= len(block)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client stopped reading: that is fine

            def _record(self, body: bytes = b""):
                with fake.lock:
                    fake.log.append({"method": self.command, "target": self.path,
                                     "range": self.headers.get("Range"), "body": body})

            def _redirect(self, relpath: str):
                self._send(302, b"", "text/plain",
                           {"Location": f"/cloud/{relpath}?X-Amz-Expires=3600"})

            def _skyserver(self, form: dict, action: str):
                cmd = form.get("cmd", [""])[0]
                if form.get("format", [""])[0] != "csv":
                    self._send(200, b"<html>format must be csv</html>", "text/html")
                    return
                ctype, body = fake.sql(cmd)
                if action == "empty" and ctype == "text/plain":
                    body = b"\n".join(body.split(b"\n")[:2]) + b"\n"
                self._send(200, body, f"{ctype}; charset=utf-8")

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                self._record()
                action = fake._next_action(self.path)
                if self._fault(action):
                    return
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = parse_qs(parts.query)
                if re.match(r"^/dr\d+/en/tools/search/x_results\.aspx$", path):
                    if len(parts.query) > fake.get_cap:
                        self._send(400, QUERY_STRING_TOO_LONG.encode(), "text/html; charset=utf-8")
                        return
                    self._skyserver(query, action)
                    return
                if path.startswith(("/sas/", "/cloud/")):
                    rel = path.lstrip("/").removeprefix("cloud/")
                    target = (fake.root / rel).resolve()
                    if fake.root.resolve() not in target.parents:
                        self._send(403, b"Forbidden", "text/plain")
                        return
                    if action == "redirect" and path.startswith("/sas/"):
                        self._redirect(rel)
                        return
                    self._serve_file(target, action)
                    return
                if path == "/api/v0.1/Download/file":
                    uri = query.get("uri", [""])[0]
                    if not uri.startswith("mast:"):
                        self._send(400, b"bad uri", "text/plain")
                        return
                    rel = "mast/" + uri[len("mast:"):]
                    target = (fake.root / rel).resolve()
                    if fake.root.resolve() not in target.parents:
                        self._send(403, b"Forbidden", "text/plain")
                        return
                    if action == "redirect":
                        self._redirect(rel)
                        return
                    self._serve_file(target, action)
                    return
                self._send(404, b"Not Found", "text/plain")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                self._record(body)
                action = fake._next_action(self.path)
                if self._fault(action):
                    return
                path = urlsplit(self.path).path
                if re.match(r"^/dr\d+/en/tools/search/x_results\.aspx$", path):
                    form = parse_qs(body.decode()) or parse_qs(urlsplit(self.path).query)
                    self._skyserver(form, action)
                    return
                if path == "/portal/Mashup/Mashup.asmx/columnsconfig":
                    self._send(200, json.dumps(COLUMNS_CONFIG).encode(), "application/json")
                    return
                if path == "/api/v0/invoke":
                    form = parse_qs(body.decode())
                    request = json.loads(form.get("request", ["{}"])[0])
                    answer = fake.invoke(request)
                    self._send(200, json.dumps(answer).encode(), "application/json")
                    return
                self._send(404, b"Not Found", "text/plain")

        return Handler


def _csv(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


__all__ = ["FakeArchive", "GET_CAP", "skyserver_error_page"]
