"""A Jupyter notebook's {base_url}api/status: its readiness (adapters/readiness.py) and its
last activity (culling)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests

from binderq.domain.models import parse_time


def notebook_status(base: str, token: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The notebook's api/status answer, or None while it does not answer 200."""
    try:
        response = requests.get(f"{base}api/status", timeout=timeout,
                                headers={"Authorization": f"token {token}"})
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def last_activity(status: dict[str, Any]) -> datetime | None:
    return parse_time(status.get("last_activity"))
