"""JADES catalogue layouts per release (DR2 v2.0, DR5 v5.0), checked against the file's
headers on first read; and the MAST portal's long polling and field types."""

from __future__ import annotations

import numpy as np
import pytest

from galcat.surveys import get_survey, jades
from galcat.surveys._http import ArchiveError, RemoteFITS, session_for

DR5 = {"release": "dr5", "field": "goods-s", "version": "v5.0"}


def test_dr2_reads_the_per_filter_half_light_radii(fake, make_config):
    df = get_survey("jades").query(make_config("jades"))
    assert df["object_id"].tolist() == [101, 205, 310, 415]
    # the v2.0 SIZE extension has F*_RHALF (no R50 / R_KRON): they no longer vanish
    for k, f in enumerate(("f115w", "f200w", "f444w"), start=1):
        assert df[f"r50_{f}"].tolist() == pytest.approx([0.15 + 0.01 * k] * 4)
    assert df["z"].tolist() == pytest.approx([2.1, 3.5, 1.2, 2.8])  # EAZY_z_a
    assert df["z_l68"].tolist() == pytest.approx([2.0, 3.4, 1.1, 2.7])


def test_dr5_layout_query_and_cutouts(fake, make_config, tmp_path):
    config = make_config("jades", jades=DR5)
    module = get_survey("jades")
    df = module.query(config)
    assert df["object_id"].tolist() == [101, 205, 310, 415]
    assert df["z"].tolist() == pytest.approx([2.1, 3.5, 1.2, 2.8])  # PHOTOZ z_a
    assert df["z_l68"].isna().all()  # DR5's interval columns are not read
    assert df["r50_f200w"].tolist() == pytest.approx([0.17] * 4)
    assert (df["jades_field"] == "goods-s").all()
    batch = module.cutouts(df.iloc[:2], config)
    assert np.isfinite(batch.image).all()
    catalogue = fake.hits("dr5/goods-s/catalogs/hlsp_jades_jwst_nircam_goods-s_photometry_"
                          "v5.0_catalog.fits")
    mosaics = fake.hits("dr5/goods-s/images/hlsp_jades_jwst_nircam_goods-s_f200w_v5.0_drz")
    assert catalogue and mosaics and not fake.hits("dr2/")
    # the z_ml column of DR5 by name
    ml = module.query(make_config("jades", jades={**DR5, "redshift_column": "z_ml"}))
    assert ml["z"].tolist() == pytest.approx([2.11, 3.51, 1.21, 2.81])


def test_layout_mismatch_names_the_missing_columns_before_reading_tables(fake, make_config):
    # DR2's column names against the DR5 file: PHOTOZ has z_a, not EAZY_*
    config = make_config("jades", jades=DR5)
    section = dict(config["jades"])
    url = jades.mast_download_url(section, jades.catalog_uri(section))
    cat = RemoteFITS(session_for(config, "jades"), url, what="JADES catalogue")
    with pytest.raises(ArchiveError) as err:
        jades.check_layout(cat, {**section, "release": "dr2", "redshift_column": None},
                           jades.RELEASES["dr2"], "JADES catalogue")
    msg = str(err.value)
    assert "DR2 (v2.0) layout" in msg
    assert "missing PHOTOZ.EAZY_z_a, PHOTOZ.EAZY_l68, PHOTOZ.EAZY_u68" in msg
    assert "PHOTOZ has ['ID', 'z_a', 'z_ml']" in msg
    # only headers were read: every request a small byte range of the header blocks
    hits = fake.hits("_catalog.fits")
    assert hits and all(h["range"] for h in hits)
    assert all(int(h["range"].split("-")[1]) - int(h["range"].split("=")[1].split("-")[0]) <
               jades.RemoteFITS.CHUNK for h in hits)


def test_a_filter_the_catalogue_lacks_is_named(fake, make_config):
    config = make_config("jades", jades={"filters": ["F150W", "F200W"]})
    with pytest.raises(ArchiveError) as err:
        get_survey("jades").query(config)
    msg = str(err.value)
    assert "missing KRON.F150W_KRON, KRON.F150W_KRON_e, SIZE.F150W_RHALF" in msg
    assert "F200W" not in msg.split("missing")[1].split("(")[0]


def test_redshift_column_must_belong_to_the_release(make_config):
    with pytest.raises(ValueError, match=r"'EAZY_z_a' is not a DR5 \(v5.0\) PHOTOZ column; "
                                         r"choose one of \['z_a', 'z_ml'\]"):
        jades.redshift_column({**DR5, "redshift_column": "EAZY_z_a"}, jades.RELEASES["dr5"])


def test_portal_long_polling_and_integer_obsid(fake, make_config):
    """Each portal query is answered EXECUTING, then COMPLETE with obsid as JSON integers."""
    config = make_config("jades")
    section = config["jades"]
    uris = jades._lookup_mosaics(session_for(config, "jades"), section, ["F200W", "F444W"])
    assert uris == {f: jades.mosaic_uri(section, f) for f in ("F200W", "F444W")}
    invokes = fake.hits("/api/v0/invoke")
    assert len(invokes) == 4  # two services, each polled twice
    # what the fake sent back has the real types: obsid declared string, valued an integer
    request = {"service": "Mast.Caom.Filtered", "params": {"filters": []}}
    assert fake.invoke(request)["status"] == "EXECUTING"
    answer = fake.invoke(request)
    assert answer["status"] == "COMPLETE"
    fields = {f["name"]: f["type"] for f in answer["fields"]}
    assert fields["obsid"] == "string" and isinstance(answer["data"][0]["obsid"], int)


def test_a_missing_extension_is_named_with_those_present(fake, make_config):
    config = make_config("jades", jades={"position_hdu": "CIRC"})
    with pytest.raises(ArchiveError, match=r"missing HDU CIRC \(its HDUs are \['FLAG', 'KRON', "
                                           r"'PHOTOZ', 'PRIMARY', 'SIZE'\]\)"):
        get_survey("jades").query(config)
