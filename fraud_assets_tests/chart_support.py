"""Charts as the assets report them: PNGs embedded in markdown metadata values."""

from __future__ import annotations

import base64
import re


def png_from_markdown(value: dict) -> bytes:
    """The PNG inside a markdown image metadata value, checked to be small enough for the UI."""
    assert value["type"] == "md"
    match = re.fullmatch(
        r"!\[[^\]]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", value["raw_value"]
    )
    assert match, value["raw_value"][:80]
    png = base64.b64decode(match.group(1))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) < 60_000, f"{len(png)} bytes: too heavy for asset metadata"
    return png
