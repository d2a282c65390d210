"""Write ``cas_schema.json``: the SkyServer (CAS) tables galcat queries, with their real columns.

The fake SkyServer checks every column of every query against that file, so the
file must come from the archive, never from galcat. It is extracted from the
CAS schema's own DDL, the ``schema/sql/*.sql`` files of SciServer's loader
(https://github.com/sciserver/sqlloader, the DR17 state: commit ``7d1af82``)::

    git clone https://github.com/sciserver/sqlloader
    git -C sqlloader checkout 7d1af82
    python tests/archive/extract_cas_schema.py sqlloader/schema/sql > tests/archive/cas_schema.json

Every column of the seven tables galcat joins is kept (not only the columns
galcat selects), so that a misspelt or misplaced column fails against the
archive's schema. The views galcat names (``PhotoObj``, ``SpecObj``) are
defined in ``Views.sql`` as filters of the base tables; they are written as such.
Not run by the tests (the loader repository is not vendored).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TABLES = ("PhotoObjAll", "SpecObjAll", "Field", "galSpecInfo", "galSpecExtra", "galSpecIndx",
          "galSpecLine",
          "zoo2MainSpecz")
FILES = ("PhotoTables.sql", "SpectroTables.sql", "galSpecTables.sql", "GalaxyZoo2Tables.sql")
#: ``CREATE VIEW PhotoObj ... WHERE mode in (1,2)`` and ``SpecObj ... WHERE sciencePrimary = 1``.
VIEWS = {"PhotoObj": {"table": "PhotoObjAll", "where": {"mode": [1, 2]}},
         "SpecObj": {"table": "SpecObjAll", "where": {"sciencePrimary": [1]}}}


def tables(ddl: str) -> dict[str, dict[str, str]]:
    """Columns (name -> SQL type) of every ``CREATE TABLE`` of a DDL file; the last one wins."""
    ddl = re.sub(r"/\*.*?\*/", "", ddl, flags=re.S)  # commented-out old definitions
    out: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"CREATE TABLE\s+(\w+)\s*\((.*?)\n\s*\)\s*\n", ddl, flags=re.S):
        cols: dict[str, str] = {}
        for line in m.group(2).splitlines():
            line = line.split("--")[0].strip()
            col = re.match(r"^\[?(\w+)\]?\s+\[?(\w+)\]?\s*(\([\d,\s]+\))?", line)
            if col and col.group(1).upper() not in {"PRIMARY", "CONSTRAINT"}:
                cols[col.group(1)] = col.group(2).lower() + (col.group(3) or "").replace(" ", "")
        out[m.group(1)] = cols
    return out


def main(sql_dir: str) -> None:
    found: dict[str, dict[str, str]] = {}
    for name in FILES:
        found.update(tables((Path(sql_dir) / name).read_text(errors="replace")))
    schema = {
        "source": "sciserver/sqlloader schema/sql (DR17, commit 7d1af82): "
                  + ", ".join(FILES) + ", Views.sql",
        "views": VIEWS,
        "tables": {t: found[t] for t in TABLES},
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
