"""A fake SDSS/MAST archive on 127.0.0.1 answering the real request paths.

Routes (what the real clients send):

``GET /dr{N}/en/tools/search/x_results.aspx?cmd=SQL&format=csv&searchtool=SQL``
    SkyServer SQL as astroquery's ``SDSS.query_sql`` sends it (DR >= 11). The
    fake parses the ``FROM ... AS p JOIN ... AS s ...`` aliases and every
    ``expr AS alias`` of the SELECT, looks each ``table.column`` up in
    ``skyserver/db.json`` (an unknown column answers SkyServer's
    ``error_message``), applies the keyset (``p.objID > N``) and ``TOP n``, and
    answers SkyServer's CSV: ``#Table1`` then a header line then rows. It does
    not evaluate the rest of the WHERE clause.
``GET /sas/...``
    Files of the Science Archive Server (SDSS frames, psField, MaNGA DRPall and
    cubes), with ``Range`` support.
``POST /portal/Mashup/Mashup.asmx/columnsconfig``, ``POST /api/v0/invoke``
    The MAST portal API as astroquery.mast uses it (column configs;
    ``Mast.Caom.Filtered`` and ``Mast.Caom.Products`` with paging).
``GET /api/v0.1/Download/file?uri=mast:...``
    MAST's download API, with ``Range`` support (206 + ``Content-Range``).

Faults: :meth:`FakeArchive.add_fault` queues actions for requests whose path
and query contain a substring: ``503`` / ``500`` (error status), ``timeout``
(answer after ``slow_s`` seconds), ``drop`` (close the connection), ``html``
(200 with an HTML error page), ``truncate`` (half the file, with a matching
Content-Length), ``norange`` (ignore ``Range``: 200 with the whole file), ``empty``
(a CSV with a header and no rows), ``ok``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

HTML_ERROR = (b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
              b"<body><h1>The archive is down for maintenance</h1></body></html>")

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


class FakeArchive:
    """Serve ``root`` (made by ``make_fixtures.make_all``) on a random local port."""

    def __init__(self, root: Path, *, slow_s: float = 1.0):
        self.root = Path(root)
        self.slow_s = slow_s
        self.db = json.loads((self.root / "skyserver/db.json").read_text())
        self.portal = json.loads((self.root / "mast/portal.json").read_text())
        self.faults: list[tuple[str, deque]] = []
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
            self.log.clear()

    # -- faults and logs ------------------------------------------------------------
    def add_fault(self, match: str, *actions: str) -> None:
        with self.lock:
            self.faults.append((match, deque(actions)))

    def _next_action(self, target: str) -> str:
        with self.lock:
            for match, queue in self.faults:
                if match in target and queue:
                    return queue.popleft()
        return "ok"

    def hits(self, match: str) -> list[dict]:
        with self.lock:
            return [e for e in self.log if match in e["target"]]

    # -- SkyServer SQL ------------------------------------------------------------
    def sql(self, cmd: str) -> tuple[int, bytes]:
        aliases = {a.lower(): t.lower() for t, a in
                   re.findall(r"(?:FROM|JOIN)\s+(\w+)\s+AS\s+(\w+)", cmd, flags=re.I)}
        select = re.search(r"SELECT\s+(?:TOP\s+(\d+)\s+)?(.*?)\s+FROM\s", cmd, flags=re.I | re.S)
        if not select:
            return 200, b"error_message: Incorrect syntax near SELECT."
        top = int(select.group(1)) if select.group(1) else 500000
        columns = []
        for part in _split_top_level(select.group(2)):
            m = re.match(r"^\s*(.+?)\s+AS\s+(\w+)\s*$", part, flags=re.I | re.S)
            if not m:
                return 200, f"error_message: cannot parse select item {part!r}".encode()
            expr, alias = m.group(1).strip(), m.group(2)
            default = None
            inner = re.match(r"^ISNULL\(\s*([\w.]+)\s*,\s*(-?[\d.]+)\s*\)$", expr, flags=re.I)
            if inner:
                expr, default = inner.group(1), float(inner.group(2))
            t_alias, _, col = expr.partition(".")
            table = aliases.get(t_alias.lower())
            if table is None:
                return 200, f"error_message: The multi-part identifier {expr} could not be bound."\
                    .encode()
            columns.append((alias, f"{table}.{col.lower()}", default))
        after = re.search(r"p\.objID\s*>\s*(\d+)", cmd, flags=re.I)
        last = int(after.group(1)) if after else 0
        rows = sorted((r for r in self.db if r["photoobj.objid"] > last),
                      key=lambda r: r["photoobj.objid"])[:top]
        for _, key, _default in columns:
            if self.db and key not in self.db[0]:
                name = key.split(".", 1)[1]
                return 200, f"error_message: Invalid column name '{name}'.".encode()
        lines = ["#Table1", ",".join(a for a, _, _ in columns)]
        for r in rows:
            lines.append(",".join(_csv(r.get(k, d)) for _, k, d in columns))
        return 200, ("\n".join(lines) + "\n").encode()

    # -- MAST portal ------------------------------------------------------------------
    def invoke(self, request: dict) -> dict:
        service = request.get("service")
        params = request.get("params", {})
        if service == "Mast.Caom.Filtered":
            rows = self.portal["observations"]
            for flt in params.get("filters", []):
                name, values = flt["paramName"], [str(v).upper() for v in flt.get("values", [])]
                if values:
                    rows = [r for r in rows if any(v in str(r.get(name, "")).upper().split(";")
                                                   for v in values)]
        elif service == "Mast.Caom.Products":
            wanted = set(str(params.get("obsid", "")).split(","))
            rows = [p for p in self.portal["products"] if p["obsID"] in wanted]
        else:
            return {"status": "ERROR", "msg": f"unknown service {service}"}
        fields = sorted({k for r in rows for k in r}) or ["obsid"]
        types = {k: "float" if isinstance(rows[0].get(k), float) else
                 "int" if isinstance(rows[0].get(k), int) else "string"
                 for k in fields} if rows else {"obsid": "string"}
        return {"status": "COMPLETE", "msg": "", "data": rows,
                "fields": [{"name": k, "type": types[k]} for k in fields],
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
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _fault(self, action: str, body_kind: str) -> bool:
                """Apply a fault; True if the request has been answered."""
                if action in ("503", "500", "502"):
                    self._send(int(action), b"Service Unavailable", "text/plain")
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
                return False

            def _serve_file(self, path: Path, action: str):
                if not path.is_file():
                    self._send(404, b"Not Found", "text/plain")
                    return
                data = path.read_bytes()
                if action == "truncate":
                    data = data[: len(data) // 2]
                rng = self.headers.get("Range") if action != "norange" else None
                if rng:
                    m = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
                    if not m:
                        self._send(416, b"bad range", "text/plain")
                        return
                    start = int(m.group(1))
                    stop = int(m.group(2)) + 1 if m.group(2) else len(data)
                    if start >= len(data):
                        self._send(416, b"", "text/plain",
                                   {"Content-Range": f"bytes */{len(data)}"})
                        return
                    stop = min(stop, len(data))
                    self._send(206, data[start:stop], "application/octet-stream",
                               {"Content-Range": f"bytes {start}-{stop - 1}/{len(data)}",
                                "Accept-Ranges": "bytes"})
                    return
                self._send(200, data, "application/octet-stream", {"Accept-Ranges": "bytes"})

            def _record(self, body: bytes = b""):
                with fake.lock:
                    fake.log.append({"method": self.command, "target": self.path,
                                     "range": self.headers.get("Range"), "body": body[:2000]})

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                self._record()
                action = fake._next_action(self.path)
                if self._fault(action, "any"):
                    return
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = parse_qs(parts.query)
                if re.match(r"^/dr\d+/en/tools/search/x_results\.aspx$", path):
                    cmd = query.get("cmd", [""])[0]
                    if query.get("format", [""])[0] != "csv":
                        self._send(200, b"<html>format must be csv</html>", "text/html")
                        return
                    if action == "empty":
                        header = fake.sql(cmd)[1].split(b"\n")[:2]
                        self._send(200, b"\n".join(header) + b"\n", "text/plain")
                        return
                    status, body = fake.sql(cmd)
                    self._send(status, body, "text/plain; charset=utf-8")
                    return
                if path.startswith("/sas/"):
                    target = (fake.root / path.lstrip("/")).resolve()
                    if fake.root.resolve() not in target.parents:
                        self._send(403, b"Forbidden", "text/plain")
                        return
                    self._serve_file(target, action)
                    return
                if path == "/api/v0.1/Download/file":
                    uri = query.get("uri", [""])[0]
                    if not uri.startswith("mast:"):
                        self._send(400, b"bad uri", "text/plain")
                        return
                    target = (fake.root / "mast" / uri[len("mast:"):]).resolve()
                    if fake.root.resolve() not in target.parents:
                        self._send(403, b"Forbidden", "text/plain")
                        return
                    self._serve_file(target, action)
                    return
                self._send(404, b"Not Found", "text/plain")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                self._record(body)
                action = fake._next_action(self.path)
                if self._fault(action, "json"):
                    return
                path = urlsplit(self.path).path
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


def _split_top_level(text: str) -> list[str]:
    """Split a SELECT list on commas outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def _csv(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


__all__ = ["FakeArchive"]
