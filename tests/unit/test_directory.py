"""The directory of parties and townships (shared/domain/directory.py, config/directory.yaml)."""

from __future__ import annotations

import copy

import pytest
import yaml
from pydantic import ValidationError

from shared.domain.directory import Directory
from shared.domain.vocabulary import PartyKind

from .conftest import DIRECTORY_FILE

TOWNSHIPS = {
    "150626100": "嘎鲁图镇",
    "150626101": "乌审召镇",
    "150626102": "图克镇",
    "150626103": "乌兰陶勒盖镇",
    "150626104": "无定河镇",
    "150626200": "苏力德苏木",
}


def directory_dict() -> dict:
    return yaml.safe_load(DIRECTORY_FILE.read_text(encoding="utf-8"))


def test_real_directory_has_the_six_townships_of_wushen_banner(directory):
    assert directory.county.name == "乌审旗"
    assert {t.code: t.name for t in directory.townships} == TOWNSHIPS


@pytest.mark.parametrize(("code", "name"), TOWNSHIPS.items())
def test_township_by_code_and_by_name(directory, code, name):
    by_code = directory.township(code)
    by_name = directory.township(name)
    assert by_code is not None and by_code.name == name
    assert by_name == by_code


def test_township_lookup_ignores_surrounding_white_space(directory):
    assert directory.township("  图克镇 ").code == "150626102"


@pytest.mark.parametrize("unknown", ["150626999", "北京市", "", "图克"])
def test_unknown_township_is_none(directory, unknown):
    assert directory.township(unknown) is None


def test_party_lookup(directory):
    police = directory.party("PPS:150626102")
    assert police is not None
    assert police.name == "图克镇派出所"
    assert police.kind is PartyKind.PPS
    assert police.township == "150626102"
    assert [c.channel for c in police.contacts] == ["file"]
    assert directory.party("BLO").name == "旗社区矫正工作领导小组办公室"
    assert directory.party("BLO").kind is PartyKind.BLO
    assert directory.party("PPS:150626999") is None


def test_every_township_has_sfs_tcg_and_pps(directory):
    """R1, R6: every township needs its 司法所, 指挥小组 and 派出所."""
    for code in TOWNSHIPS:
        for kind in ("SFS", "TCG", "PPS"):
            assert directory.party(f"{kind}:{code}") is not None


def test_directory_missing_a_townships_pps_fails_validation():
    data = directory_dict()
    data["parties"] = [p for p in data["parties"] if p["code"] != "PPS:150626102"]
    with pytest.raises(ValidationError, match="township 图克镇 has no PPS"):
        Directory.model_validate(data)


@pytest.mark.parametrize("kind", ["BLO", "BJO", "CEO"])
def test_directory_missing_a_banner_party_fails_validation(kind):
    data = directory_dict()
    data["parties"] = [p for p in data["parties"] if p["code"] != kind]
    with pytest.raises(ValidationError, match=f"directory has no {kind}"):
        Directory.model_validate(data)


def test_party_listed_twice_fails_validation():
    data = directory_dict()
    data["parties"].append(copy.deepcopy(data["parties"][0]))
    with pytest.raises(ValidationError, match="listed twice"):
        Directory.model_validate(data)


def test_party_of_an_unknown_township_fails_validation():
    data = directory_dict()
    data["parties"].append({"code": "SFS:150626999", "name": "某镇司法所"})
    with pytest.raises(ValidationError, match="SFS:150626999 names an unknown township"):
        Directory.model_validate(data)


def test_bad_township_code_fails_validation():
    data = directory_dict()
    data["townships"][0]["code"] = "15062610"
    with pytest.raises(ValidationError):
        Directory.model_validate(data)


def test_township_bound_party_without_township_code_fails_validation():
    data = directory_dict()
    data["parties"].append({"code": "SFS", "name": "某司法所"})
    with pytest.raises(ValidationError):
        Directory.model_validate(data)


def test_r18_directory_knows_the_procuratorate_and_deciding_authorities(directory):
    """R18 (社区矫正法 Art. 51): the procuratorate and the deciding authorities are parties with
    contacts, bound to no township."""
    procuratorate = directory.party("PRO")
    assert procuratorate is not None and procuratorate.kind is PartyKind.PRO
    assert procuratorate.name == "乌审旗人民检察院" and procuratorate.township is None
    assert procuratorate.contacts
    for court in ("乌审旗人民法院", "鄂尔多斯市中级人民法院"):
        deciding = directory.party(f"DEC:{court}")
        assert deciding is not None and deciding.kind is PartyKind.DEC
        assert deciding.name == court and deciding.township is None
        assert deciding.contacts


def test_r18_another_deciding_authority_is_data_not_code():
    data = directory_dict()
    data["parties"].append(
        {"code": "DEC:杭锦旗人民法院", "name": "杭锦旗人民法院", "contacts": [{"channel": "file"}]}
    )
    assert Directory.model_validate(data).party("DEC:杭锦旗人民法院").kind is PartyKind.DEC


@pytest.mark.parametrize("code", ["DEC:", "DEC:乌审旗:人民法院", "PRO:150626102", "DEC"])
def test_r18_malformed_pro_or_dec_codes_fail_validation(code):
    data = directory_dict()
    data["parties"].append({"code": code, "name": "某机关"})
    with pytest.raises(ValidationError):
        Directory.model_validate(data)
