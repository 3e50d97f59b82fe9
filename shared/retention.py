"""The policy's `retention` section: how long personal data is kept after an incident closes
(个人信息保护法 Art. 19: no longer than the purpose needs; the bureau's 档案 period)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.policyfile import policy_data


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    personal_data_years_after_closure: int = Field(ge=0, le=100)

    @classmethod
    def load(cls, path: Path, overrides: Path | None = None) -> Retention:
        return cls.model_validate(policy_data(path, overrides)["retention"])

    def erase_before(self, now: datetime) -> datetime:
        """Incidents closed before this moment have had their personal data long enough."""
        return years_before(now, self.personal_data_years_after_closure)


def years_before(moment: datetime, years: int) -> datetime:
    """The same date and time `years` calendar years earlier; 29 February becomes the 28th."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February, in a year that has none
        return moment.replace(year=moment.year - years, day=28)
