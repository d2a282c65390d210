"""SkyServer as the real one behaves: every column checked against the CAS schema,
WHERE clauses honoured, long GETs refused, SQL errors as its HTML page; and galcat's
queries (POST forms, columns at their real tables, exact spectrum ids) against it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import numpy as np
import pytest

from galcat.surveys import get_survey, sdss
from galcat.surveys._http import ArchiveError, HTTPStatusError, session_for
from tests.archive.fake_archive import GET_CAP
from tests.archive.fake_skyserver import CasSchema, SkyServerDB, SQLError, Unsupported

SCHEMA = CasSchema()


def columns_of_galcat() -> dict[str, str]:
    """Every ``alias.column`` galcat can put into SQL: selects, joins and filters."""
    cols = {expr for expr, _, _ in sdss.CORE_COLUMNS.values()}
    cols |= {expr for expr, _, _ in sdss.EXTRA_COLUMNS.values()}
    cols |= {f"z2.{stem}{suffix}" for stem in sdss.GZ2_COLUMNS.values()
             for suffix in sdss.GZ2_SUFFIX.values()}
    sql = sdss.build_sql({"selection": {"ra": {"min": 1, "max": 2}, "dec": {"min": 1, "max": 2},
                                        "z": {"min": 0.1}, "petro_mag_r": {"max": 17},
                                        "require_mpajhu": True, "require_gz2": True},
                          "extra_columns": sorted(sdss.EXTRA_COLUMNS)})
    import re

    cols |= set(re.findall(r"\b(?:p|s|f|g|gi|z2)\.[A-Za-z_][A-Za-z0-9_]*", sql))
    return {c: SCHEMA.resolve(sdss.TABLES[c.split(".")[0]][0])[0] for c in cols}


def test_every_column_galcat_names_is_in_the_cas_schema():
    cols = columns_of_galcat()
    assert len(cols) > 200
    missing = [c for c, table in cols.items()
               if SCHEMA.column(table, c.split(".", 1)[1]) is None]
    assert missing == []
    # the extra columns live in their real tables: d4000 in galSpecIndx (not galSpecExtra)
    assert sdss.EXTRA_COLUMNS["d4000"][0] == "gi.d4000"
    assert sdss.TABLES["gi"][0] == "galSpecIndx"
    assert SCHEMA.column("galSpecExtra", "d4000") is None
    for table_alias, extras in sdss.EXTRA_BY_TABLE.items():
        table = SCHEMA.resolve(sdss.TABLES[table_alias][0])[0]
        for alias, (column, _, _) in extras.items():
            assert SCHEMA.column(table, column) == column, (alias, table, column)


def test_galspecindx_is_joined_only_when_a_column_needs_it():
    assert "galSpecIndx" not in sdss.build_sql({"extra_columns": ["vel_disp"]})
    sql = sdss.build_sql({"extra_columns": ["d4000"]})
    assert "LEFT OUTER JOIN galSpecIndx AS gi ON gi.specObjID = s.specObjID" in sql
    assert "ISNULL(gi.d4000, -9999) AS d4000" in sql


@pytest.mark.parametrize("fraction", sorted(sdss.GZ2_SUFFIX))
def test_whole_query_runs_on_the_schema_checked_engine(archive_files, fraction):
    db = SkyServerDB(json.loads((archive_files[0] / "skyserver/db.json").read_text()))
    section = {"gz2_fraction": fraction, "extra_columns": sorted(sdss.EXTRA_COLUMNS),
               "selection": {"z": {"min": 0.02, "max": 0.15}, "petro_mag_r": {"max": 17.77}}}
    names, rows = db.run(sdss.build_sql(section, top=100))
    assert len(names) == len(set(names)) == len(sdss._select_columns(section))
    assert len(rows) == 4  # the decoys at z = 0.31 and r = 18.4 are out


def test_engine_answers_sql_servers_messages(archive_files):
    db = SkyServerDB(json.loads((archive_files[0] / "skyserver/db.json").read_text()))
    cases = {
        "SELECT g.d4000 AS d FROM SpecObj AS s JOIN galSpecExtra AS g ON g.specObjID = "
        "s.specObjID": "Invalid column name 'd4000'.",
        "SELECT x.ra AS ra FROM PhotoObj AS p": 'The multi-part identifier "x.ra" could not be '
                                                "bound.",
        "SELECT p.ra AS ra FROM PhotoObjz AS p": "Invalid object name 'PhotoObjz'.",
        "SELECT ra AS ra FROM PhotoObj AS p JOIN SpecObj AS s ON s.bestObjID = p.objID":
            "Ambiguous column name 'ra'.",
        "SELECT p.ra AS ra FROM PhotoObj AS p WHERE p.type = = 3": "Incorrect syntax near '='.",
    }
    for sql, message in cases.items():
        with pytest.raises(SQLError) as err:
            db.run(sql)
        assert str(err.value) == message
    for sql in ("SELECT p.ra AS ra FROM PhotoObj AS p WHERE p.type = 3 OR p.type = 6",
                "SELECT TOP 1 * FROM PhotoObj", "SELECT COUNT(p.objID) AS n FROM PhotoObj AS p"):
        with pytest.raises(Unsupported):
            db.run(sql)
    with pytest.raises(ValueError, match=r"galSpecExtra\.d4000 is not in the CAS schema"):
        SkyServerDB({"galSpecExtra": [{"specObjID": 1, "d4000": 1.2}]})


def test_engine_honours_where_joins_and_views(archive_files):
    db = SkyServerDB(json.loads((archive_files[0] / "skyserver/db.json").read_text()))
    _, every = db.run("SELECT p.objID AS id FROM PhotoObj AS p ORDER BY p.objID")
    assert len(every) == 9  # four galaxies, five decoys
    _, stars = db.run("SELECT p.objID AS id FROM PhotoObj AS p WHERE p.type = 6")
    assert len(stars) == 1
    # the SpecObj view hides the decoy whose only spectrum is not science-primary
    _, spec = db.run("SELECT s.specObjID AS id FROM SpecObj AS s")
    assert len(spec) == 8
    _, glx = db.run("SELECT s.specObjID AS id FROM SpecObj AS s WHERE s.class = 'galaxy' "
                    "AND s.z BETWEEN 0.02 AND 0.15 AND s.zWarning IN (0, 16)")
    assert len(glx) == 5  # case-insensitive strings; the star and the warning are out
    _, left = db.run("SELECT s.specObjID AS id, ISNULL(g.lgm_tot_p50, -9999) AS m FROM "
                     "SpecObj AS s LEFT OUTER JOIN galSpecExtra AS g ON g.specObjID = "
                     "s.specObjID WHERE g.specObjID IS NULL")
    assert [m for _, m in left] == [-9999]  # the eBOSS spectrum has no MPA-JHU row


def test_galcat_selection_excludes_every_decoy(fake, make_config, truth):
    df = get_survey("sdss").query(make_config("sdss"))
    assert sorted(df["object_id"].astype(str)) == sorted(truth["sdss"]["objects"])
    assert not set(df["object_id"].astype(str)) & set(truth["sdss"]["decoys"])


MAIN = {"z": {"min": 0.02, "max": 0.15}, "petro_mag_r": {"max": 17.77}}


@pytest.mark.parametrize("selection,expected", [
    ({**MAIN, "z": {"min": 0.02, "max": 0.06}}, [0, 1]),
    ({**MAIN, "require_gz2": True}, [0, 1, 2]),
    ({**MAIN, "require_mpajhu": True}, [0, 1, 2]),
    ({**MAIN, "petro_mag_r": {"max": 15.8}}, [0, 3]),
    ({**MAIN, "ra": {"min": 150.04}, "dec": {"max": 2.06}}, [0, 1]),
    ({"z": {"min": 0.02, "max": 0.15}}, [0, 1, 2, 3, "r = 18.4"]),
])
def test_selection_reaches_the_server(fake, make_config, truth, selection, expected):
    config = make_config("sdss", sdss={"selection": selection})
    df = get_survey("sdss").query(config)
    ids = sorted(int(k) for k in truth["sdss"]["objects"])
    faint = int(truth["sdss"]["decoys"][2])  # the decoy at r = 18.4
    assert df["object_id"].tolist() == sorted(ids[k] if isinstance(k, int) else faint
                                              for k in expected)


def test_query_goes_out_as_a_post_form_and_a_long_get_is_refused(fake, make_config):
    config = make_config("sdss", sdss={"extra_columns": ["d4000", "vel_disp"]})
    df = get_survey("sdss").query(config)
    hits = fake.hits("x_results.aspx")
    assert hits and all(h["method"] == "POST" and "?" not in h["target"] for h in hits)
    cmd = parse_qs(hits[0]["body"].decode())["cmd"][0]
    assert len(cmd) > GET_CAP  # as a GET it would be over the cap
    # d4000 came from galSpecIndx; the eBOSS spectrum has none (NaN, not -9999)
    assert df["d4000"].tolist()[:3] == pytest.approx([1.4, 1.5, 1.6])
    assert np.isnan(df["d4000"].iloc[3])
    # astroquery's own query_sql (a GET) of the same query is refused, with ASP.NET's words
    from astroquery.sdss import conf

    client = sdss._sdss_client(session_for(config, "sdss"))
    with conf.set_temp("skyserver_baseurl", fake.url), \
            pytest.raises(HTTPStatusError, match=r"HTTP 400 .*maxQueryStringLength") as err:
        client.query_sql(sdss.build_sql(config["sdss"]), data_release=17, cache=False)
    assert err.value.status == 400
    # a short GET is served (the cap is on the length, not the method)
    with conf.set_temp("skyserver_baseurl", fake.url):
        table = client.query_sql("SELECT TOP 2 p.objID AS objid FROM PhotoObj AS p",
                                 data_release=17, cache=False)
    assert len(table) == 2


def test_sql_error_quotes_the_servers_message(fake, make_config):
    config = make_config("sdss")
    session = session_for(config, "sdss")
    client = sdss._sdss_client(session)
    # the column map galcat had before: d4000 at galSpecExtra
    bad = sdss.build_sql(config["sdss"]).replace(
        "p.petroR50_r AS petror50_r", "ISNULL(g.d4000, -9999) AS d4000")
    with pytest.raises(ArchiveError) as err:
        sdss._run_sql(client, session, config["sdss"], bad, "SDSS SQL query, batch 1")
    msg = str(err.value)
    assert msg == "SDSS SQL query, batch 1: SkyServer refused the query: Invalid column name " \
                  "'d4000'."
    # an error page is never cached: the next run asks the server again
    with pytest.raises(ArchiveError):
        sdss._run_sql(client, session, config["sdss"], bad, "SDSS SQL query, batch 1")
    assert len(fake.hits("x_results.aspx")) == 2


def test_sql_the_fake_cannot_evaluate_fails_loudly(fake, make_config):
    config = make_config("sdss")
    session = session_for(config, "sdss")
    with pytest.raises(ArchiveError, match="fake SkyServer cannot evaluate OR"):
        sdss._run_sql(sdss._sdss_client(session), session, config["sdss"],
                      "SELECT p.objID AS objid FROM PhotoObj AS p WHERE p.type = 3 OR p.ra > 0",
                      "SDSS SQL query")


def test_spectrum_ids_are_exact_above_2_63(fake, make_config, truth):
    df = get_survey("sdss").query(make_config("sdss"))
    assert df["specobjid"].dtype == np.uint64
    for oid, spec in zip(df["object_id"], df["specobjid"], strict=True):
        assert str(spec) == truth["sdss"]["specobjid"][str(oid)]
    assert int(df["specobjid"].max()) > 2**63  # wrapped negative before
