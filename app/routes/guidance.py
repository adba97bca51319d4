"""The colour-guidance fields of a multipart request (DESIGN.md, "Hints"): `hints` (JSON) and `reference` (an image),
read and turned into one Guidance for app/colorize.py."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import File, Form, UploadFile

from app.colorize import Colorizer
from app.guidance import Guidance, parse_hints

HintsField = Annotated[
    str | None,
    Form(
        description='JSON colour hints: {"points": [{"x": 120, "y": 45, "color": "#c03020", "radius": 6}], '
        '"palette": ["#2a5caa", "#e0c080"]}. Points are in pixels of the orientation-corrected input; radius is '
        "optional, in the same pixels. Only a colour's a and b are used: the lightness stays the photo's.",
    ),
]
PaletteOnlyField = Annotated[
    str | None,
    Form(description='JSON {"palette": ["#2a5caa", ...]}: the colours every image or frame should draw on'),
]
ReferenceField = Annotated[
    UploadFile | None,
    File(description="an image whose colour distribution becomes the global hint (it wins over a palette)"),
]


async def read_guidance(
    colorizer: Colorizer, hints: str | None, reference: UploadFile | None, *, points_allowed: bool = True
) -> Guidance:
    """Parse and check the hints first (a cheap 422), then decode the reference photo, if any, to its colours."""
    guidance = parse_hints(hints, points_allowed=points_allowed)
    if reference is None:
        return guidance
    distribution = await colorizer.reference(await reference.read())
    return dataclasses.replace(guidance, reference=distribution)
