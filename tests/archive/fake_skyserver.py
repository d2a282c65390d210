"""A tiny SQL engine that answers SkyServer SQL the way the real CAS does, for the subset
of SQL that galcat sends, and refuses everything else loudly.

It checks every table and column of a query against ``cas_schema.json`` (the real CAS
schema of the tables galcat joins, see ``extract_cas_schema.py``), evaluates the joins,
the WHERE clause, ORDER BY and TOP on a small database of rows keyed by the real column
names, and answers SQL Server's own messages for what the real server rejects:

- ``Invalid object name 'X'.`` (a table or view the schema does not have);
- ``The multi-part identifier "a.b" could not be bound.`` (an alias not in FROM/JOIN);
- ``Invalid column name 'b'.`` (a column its table does not have);
- ``Ambiguous column name 'b'.``, ``Incorrect syntax near 'x'.``.

Supported: ``SELECT [TOP n] item [AS alias], ... FROM t [AS] a
{[INNER | LEFT [OUTER]] JOIN t [AS] a ON cond} [WHERE cond] [ORDER BY col [ASC|DESC], ...]``
where an item is a column, ``ISNULL(column, number)`` or a literal, and a condition is
predicates (``=, <>, !=, <, <=, >, >=``, ``IS [NOT] NULL``, ``BETWEEN``, ``IN (...)``)
joined by ``AND``. Valid SQL outside that subset (OR, sub-queries, functions) raises
:class:`Unsupported`, which the fake answers as an error, so that a test fails instead
of silently matching rows the real server would not. Comparisons of strings ignore case
(SkyServer's default collation is case-insensitive); a comparison with NULL is false.
The views (``PhotoObj``, ``SpecObj``) filter their base tables as the CAS defines them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("cas_schema.json")

__all__ = ["CasSchema", "SQLError", "SkyServerDB", "Unsupported"]


class SQLError(Exception):
    """An error the real SkyServer reports (its SQL Server message)."""


class Unsupported(Exception):
    """Valid SQL that this fake cannot evaluate (a test must not rely on it)."""


# --------------------------------------------------------------------------- schema


class CasSchema:
    """Tables (with their real column types) and views of ``cas_schema.json``."""

    def __init__(self, path: Path = SCHEMA_FILE):
        raw = json.loads(Path(path).read_text())
        self.tables: dict[str, dict[str, str]] = raw["tables"]
        self.views: dict[str, dict] = raw["views"]
        self._names = {n.lower(): n for n in (*self.tables, *self.views)}

    def resolve(self, name: str) -> tuple[str, dict[str, list]]:
        """(base table, view filter) of a table or view name, any case."""
        canonical = self._names.get(name.lower())
        if canonical is None:
            raise SQLError(f"Invalid object name '{name}'.")
        if canonical in self.views:
            view = self.views[canonical]
            return view["table"], view["where"]
        return canonical, {}

    def column(self, table: str, name: str) -> str | None:
        """The column's canonical name in ``table`` (any case), or None."""
        for col in self.tables[table]:
            if col.lower() == name.lower():
                return col
        return None

    def type_of(self, table: str, column: str) -> str:
        return self.tables[table][column]


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
    | (?P<str>'(?:[^']|'')*')
    | (?P<name>\[?[A-Za-z_][A-Za-z0-9_]*\]?(?:\.\[?[A-Za-z_][A-Za-z0-9_]*\]?)?)
    | (?P<op><>|!=|<=|>=|=|<|>)
    | (?P<punct>[(),*])
    )""", re.X)


@dataclass
class Tok:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper()


def tokenize(sql: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    sql = sql.rstrip().rstrip(";")
    while pos < len(sql):
        if sql[pos:].strip() == "":
            break
        m = _TOKEN.match(sql, pos)
        if not m or m.end() == pos:
            near = sql[pos:].strip().split()[0] if sql[pos:].strip() else sql[pos:]
            raise SQLError(f"Incorrect syntax near '{near[:20]}'.")
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "name":
            text = text.replace("[", "").replace("]", "")
        toks.append(Tok(kind, text))
        pos = m.end()
    return toks


# --------------------------------------------------------------------------- AST


@dataclass
class Col:
    alias: str | None  # table alias, None when unqualified
    name: str


@dataclass
class Lit:
    value: object  # int, float, str or None


@dataclass
class IsNull:
    col: Col
    default: Lit


@dataclass
class Pred:
    op: str  # = <> < <= > >= isnull notnull between in
    left: object
    right: object = None
    extra: object = None


@dataclass
class Source:
    table: str  # base table
    view_filter: dict
    alias: str
    kind: str = "FROM"  # FROM, INNER, LEFT
    on: list[Pred] = field(default_factory=list)


@dataclass
class Query:
    top: int | None
    items: list[tuple[object, str]]
    sources: list[Source]
    where: list[Pred]
    order: list[tuple[Col, bool]]  # (column, descending)


KEYWORDS = {"SELECT", "TOP", "FROM", "AS", "JOIN", "INNER", "LEFT", "OUTER", "RIGHT", "FULL",
            "CROSS", "ON", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "ASC", "DESC", "IS",
            "NULL", "BETWEEN", "IN", "GROUP", "HAVING", "UNION", "DISTINCT", "ISNULL", "LIKE"}


class Parser:
    def __init__(self, sql: str, schema: CasSchema):
        self.toks = tokenize(sql)
        self.i = 0
        self.schema = schema

    # -- helpers ----------------------------------------------------------------------
    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, *words: str) -> bool:
        t = self.peek()
        return t is not None and t.upper in words

    def take(self) -> Tok:
        t = self.peek()
        if t is None:
            raise SQLError("Incorrect syntax near the end of the query.")
        self.i += 1
        return t

    def expect(self, word: str) -> Tok:
        t = self.take()
        if t.upper != word:
            raise SQLError(f"Incorrect syntax near '{t.text}'.")
        return t

    def ident(self) -> str:
        t = self.take()
        if t.kind != "name" or t.upper in KEYWORDS or "." in t.text:
            raise SQLError(f"Incorrect syntax near '{t.text}'.")
        return t.text

    # -- grammar ----------------------------------------------------------------------
    def query(self) -> Query:
        self.expect("SELECT")
        if self.at("DISTINCT"):
            raise Unsupported("SELECT DISTINCT")
        top = None
        if self.at("TOP"):
            self.take()
            t = self.take()
            if t.kind != "num":
                raise SQLError(f"Incorrect syntax near '{t.text}'.")
            top = int(float(t.text))
        items = [self.select_item()]
        while self.peek() is not None and self.peek().text == ",":
            self.take()
            items.append(self.select_item())
        self.expect("FROM")
        sources = [self.source("FROM")]
        while self.at("JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS"):
            kind = self.take().upper
            if kind in {"RIGHT", "FULL", "CROSS"}:
                raise Unsupported(f"{kind} JOIN")
            if kind == "LEFT":
                if self.at("OUTER"):
                    self.take()
                self.expect("JOIN")
            elif kind == "INNER":
                self.expect("JOIN")
            src = self.source("LEFT" if kind == "LEFT" else "INNER")
            self.expect("ON")
            src.on = self.conditions()
            sources.append(src)
        where: list[Pred] = []
        if self.at("WHERE"):
            self.take()
            where = self.conditions()
        order: list[tuple[Col, bool]] = []
        if self.at("ORDER"):
            self.take()
            self.expect("BY")
            while True:
                col = self.column()
                desc = False
                if self.at("ASC", "DESC"):
                    desc = self.take().upper == "DESC"
                order.append((col, desc))
                if self.peek() is not None and self.peek().text == ",":
                    self.take()
                    continue
                break
        if self.at("GROUP", "HAVING", "UNION"):
            raise Unsupported(self.peek().upper)
        if self.peek() is not None:
            raise SQLError(f"Incorrect syntax near '{self.peek().text}'.")
        return Query(top, items, sources, where, order)

    def source(self, kind: str) -> Source:
        name = self.take()
        if name.kind != "name" or name.upper in KEYWORDS:
            raise SQLError(f"Incorrect syntax near '{name.text}'.")
        if name.text.startswith("dbo.") or "." in name.text:
            raise Unsupported(f"qualified table name {name.text}")
        table, view_filter = self.schema.resolve(name.text)
        alias = name.text
        if self.at("AS"):
            self.take()
            alias = self.ident()
        elif self.peek() is not None and self.peek().kind == "name" and self.peek().upper not in \
                KEYWORDS:
            alias = self.ident()
        return Source(table, view_filter, alias, kind)

    def select_item(self) -> tuple[object, str]:
        if self.peek() is not None and self.peek().text == "*":
            raise Unsupported("SELECT *")
        if self.at("ISNULL"):
            self.take()
            self.expect("(")
            col = self.column()
            self.expect(",")
            default = self.literal()
            self.expect(")")
            expr: object = IsNull(col, default)
        elif self.peek() is not None and self.peek().kind in {"num", "str"}:
            expr = self.literal()
        else:
            tok = self.peek()
            if tok is not None and self.peek(1) is not None and self.peek(1).text == "(":
                raise Unsupported(f"function {tok.text}()")
            expr = self.column()
        if self.at("AS"):
            self.take()
            alias = self.ident()
        else:
            alias = expr.name if isinstance(expr, Col) else ""
        return expr, alias

    def column(self) -> Col:
        t = self.take()
        if t.kind != "name" or t.upper in KEYWORDS:
            raise SQLError(f"Incorrect syntax near '{t.text}'.")
        alias, dot, name = t.text.partition(".")
        return Col(alias, name) if dot else Col(None, alias)

    def literal(self) -> Lit:
        t = self.take()
        if t.kind == "num":
            return Lit(float(t.text) if any(c in t.text for c in ".eE") else int(t.text))
        if t.kind == "str":
            return Lit(t.text[1:-1].replace("''", "'"))
        if t.upper == "NULL":
            return Lit(None)
        raise SQLError(f"Incorrect syntax near '{t.text}'.")

    def operand(self) -> object:
        t = self.peek()
        if t is not None and (t.kind in {"num", "str"} or t.upper == "NULL"):
            return self.literal()
        if t is not None and t.text == "(":
            raise Unsupported("parenthesised condition or sub-query")
        if t is not None and self.peek(1) is not None and self.peek(1).text == "(":
            raise Unsupported(f"function {t.text}()")
        return self.column()

    def conditions(self) -> list[Pred]:
        preds = [self.predicate()]
        while self.at("AND", "OR"):
            if self.take().upper == "OR":
                raise Unsupported("OR")
            preds.append(self.predicate())
        return preds

    def predicate(self) -> Pred:
        if self.at("NOT"):
            raise Unsupported("NOT")
        left = self.operand()
        if self.at("IS"):
            self.take()
            negate = self.at("NOT")
            if negate:
                self.take()
            self.expect("NULL")
            return Pred("notnull" if negate else "isnull", left)
        if self.at("BETWEEN"):
            self.take()
            lo = self.operand()
            self.expect("AND")
            return Pred("between", left, lo, self.operand())
        if self.at("IN"):
            self.take()
            self.expect("(")
            values = [self.literal()]
            while self.peek() is not None and self.peek().text == ",":
                self.take()
                values.append(self.literal())
            self.expect(")")
            return Pred("in", left, values)
        if self.at("LIKE", "NOT"):
            raise Unsupported(self.peek().upper)
        t = self.take()
        if t.kind != "op":
            raise SQLError(f"Incorrect syntax near '{t.text}'.")
        return Pred("<>" if t.text == "!=" else t.text, left, self.operand())


# --------------------------------------------------------------------------- evaluation


def _number(sql_type: str) -> bool:
    return sql_type.split("(")[0] in {"bigint", "int", "smallint", "tinyint", "real", "float",
                                      "numeric", "decimal", "bit", "money"}


class SkyServerDB:
    """Rows of the real tables (``{table: [ {column: value} ]}``) answering SQL."""

    def __init__(self, rows: dict[str, list[dict]], schema: CasSchema | None = None):
        self.schema = schema or CasSchema()
        self.rows: dict[str, list[dict]] = {}
        for table, table_rows in rows.items():
            if table not in self.schema.tables:
                raise ValueError(f"fixture table {table!r} is not in the CAS schema")
            fixed = []
            for row in table_rows:
                out = {}
                for col, value in row.items():
                    canonical = self.schema.column(table, col)
                    if canonical is None:  # the fixtures may not invent columns either
                        raise ValueError(f"fixture column {table}.{col} is not in the CAS schema")
                    out[canonical] = value
                fixed.append(out)
            self.rows[table] = fixed

    # -- binding --------------------------------------------------------------------------
    def _bind(self, col: Col, sources: list[Source]) -> tuple[str, str]:
        """(alias, canonical column) of a column reference."""
        if col.alias is not None:
            for src in sources:
                if src.alias.lower() == col.alias.lower():
                    canonical = self.schema.column(src.table, col.name)
                    if canonical is None:
                        raise SQLError(f"Invalid column name '{col.name}'.")
                    return src.alias, canonical
            raise SQLError(f'The multi-part identifier "{col.alias}.{col.name}" could not be '
                           "bound.")
        hits = [(s.alias, self.schema.column(s.table, col.name)) for s in sources
                if self.schema.column(s.table, col.name) is not None]
        if not hits:
            raise SQLError(f"Invalid column name '{col.name}'.")
        if len(hits) > 1:
            raise SQLError(f"Ambiguous column name '{col.name}'.")
        return hits[0]

    def _check(self, query: Query) -> None:
        """Bind every column reference, in SQL Server's order: FROM/JOIN, then the rest."""
        for k, src in enumerate(query.sources):
            for pred in src.on:
                self._check_pred(pred, query.sources[: k + 1])
        for pred in query.where:
            self._check_pred(pred, query.sources)
        for expr, _ in query.items:
            if isinstance(expr, Col):
                self._bind(expr, query.sources)
            elif isinstance(expr, IsNull):
                self._bind(expr.col, query.sources)
        for col, _ in query.order:
            self._bind(col, query.sources)

    def _check_pred(self, pred: Pred, sources: list[Source]) -> None:
        for side in (pred.left, pred.right, pred.extra):
            if isinstance(side, Col):
                self._bind(side, sources)

    # -- values -----------------------------------------------------------------------
    def _value(self, operand, env: dict[str, dict | None], sources: list[Source]):
        if isinstance(operand, Lit):
            return operand.value
        alias, column = self._bind(operand, sources)
        row = env.get(alias)
        return None if row is None else row.get(column)

    @staticmethod
    def _compare(op: str, a, b) -> bool:
        if a is None or b is None:
            return False
        if isinstance(a, str) and isinstance(b, str):
            a, b = a.lower(), b.lower()
        elif isinstance(a, str) or isinstance(b, str):
            try:
                a, b = float(a), float(b)
            except ValueError:
                raise SQLError(f"Conversion failed when converting the varchar value "
                               f"'{a if isinstance(a, str) else b}' to data type int.") from None
        return {"=": a == b, "<>": a != b, "<": a < b, "<=": a <= b, ">": a > b,
                ">=": a >= b}[op]

    def _holds(self, pred: Pred, env, sources) -> bool:
        left = self._value(pred.left, env, sources)
        if pred.op == "isnull":
            return left is None
        if pred.op == "notnull":
            return left is not None
        if pred.op == "between":
            return (self._compare(">=", left, self._value(pred.right, env, sources))
                    and self._compare("<=", left, self._value(pred.extra, env, sources)))
        if pred.op == "in":
            return any(self._compare("=", left, v.value) for v in pred.right)
        return self._compare(pred.op, left, self._value(pred.right, env, sources))

    def _table_rows(self, src: Source) -> list[dict]:
        rows = self.rows.get(src.table, [])
        for col, allowed in src.view_filter.items():
            rows = [r for r in rows if r.get(col) in allowed]
        return rows

    # -- query ------------------------------------------------------------------------
    def run(self, sql: str) -> tuple[list[str], list[list]]:
        """(column names, rows) of ``sql``; :class:`SQLError` or :class:`Unsupported`."""
        query = Parser(sql, self.schema).query()
        self._check(query)
        first = query.sources[0]
        envs: list[dict] = [{first.alias: r} for r in self._table_rows(first)]
        for k, src in enumerate(query.sources[1:], start=1):
            visible = query.sources[: k + 1]
            joined = []
            for env in envs:
                matches = [r for r in self._table_rows(src)
                           if all(self._holds(p, {**env, src.alias: r}, visible) for p in src.on)]
                if matches:
                    joined.extend({**env, src.alias: r} for r in matches)
                elif src.kind == "LEFT":
                    joined.append({**env, src.alias: None})
            envs = joined
        envs = [e for e in envs if all(self._holds(p, e, query.sources) for p in query.where)]
        for col, desc in reversed(query.order):
            envs.sort(key=lambda e, c=col: _sort_key(self._value(c, e, query.sources)),
                      reverse=desc)
        if query.top is not None:
            envs = envs[: query.top]
        names = [alias for _, alias in query.items]
        out = []
        for env in envs:
            row = []
            for expr, _ in query.items:
                if isinstance(expr, IsNull):
                    value = self._value(expr.col, env, query.sources)
                    row.append(expr.default.value if value is None else value)
                else:
                    row.append(self._value(expr, env, query.sources))
            out.append(row)
        return names, out


def _sort_key(value):
    return (value is not None, value if value is not None else 0)
