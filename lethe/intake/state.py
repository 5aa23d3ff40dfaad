"""What every route of the intake app shares."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Engine

from lethe.intake.cases import CaseDesk
from lethe.intake.credentials import Credentials
from lethe.settings import Settings


@dataclass(frozen=True)
class Intake:
    settings: Settings
    desk: CaseDesk
    credentials: Credentials
    ledger: Engine


def intake_of(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake
