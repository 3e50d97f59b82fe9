"""The directory of parties and townships (deployment data, `config/directory.yaml`)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.vocabulary import PARTY_PATTERN, TOWNSHIP_BOUND_KINDS, PartyKind, party_kind_of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Township(_Strict):
    code: str = Field(pattern=r"^\d{9}$")
    name: str


class County(_Strict):
    code: str
    name: str


class Contact(_Strict):
    channel: str = Field(description="plugin name: webhook, file, ...")
    address: str | None = Field(default=None, description="URL, phone, e-mail; file: a path")
    label: str | None = None


class Party(_Strict):
    code: str = Field(pattern=PARTY_PATTERN)
    name: str
    township: str | None = None
    contacts: tuple[Contact, ...] = ()
    # R16: drills use these only; a police station's real contacts never get a drill alert.
    drill_contacts: tuple[Contact, ...] = ()

    @property
    def kind(self) -> PartyKind:
        return party_kind_of(self.code)


class Directory(_Strict):
    version: int
    county: County
    townships: tuple[Township, ...]
    parties: tuple[Party, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Directory:
        codes = {township.code for township in self.townships}
        seen: set[str] = set()
        for party in self.parties:
            if party.code in seen:
                raise ValueError(f"party {party.code} listed twice")
            seen.add(party.code)
            if party.kind in TOWNSHIP_BOUND_KINDS and party.code.split(":", 1)[1] not in codes:
                raise ValueError(f"party {party.code} names an unknown township")
        for township in self.townships:
            for kind in TOWNSHIP_BOUND_KINDS:
                if f"{kind}:{township.code}" not in seen:
                    raise ValueError(f"township {township.name} has no {kind}")
        for kind in (PartyKind.BLO, PartyKind.BJO, PartyKind.CEO):
            if kind not in seen:
                raise ValueError(f"directory has no {kind}")
        return self

    @classmethod
    def load(cls, path: Path) -> Directory:
        return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))

    def township(self, code_or_name: str) -> Township | None:
        """Find a township by its division code or its Chinese name."""
        wanted = code_or_name.strip()
        for township in self.townships:
            if wanted in (township.code, township.name):
                return township
        return None

    def party(self, code: str) -> Party | None:
        for party in self.parties:
            if party.code == code:
                return party
        return None
