"""Fuzzing: hypothesis on the decode path (in process), schemathesis on the HTTP API (a real server).

Both are bounded: a fixed number of examples (FUZZ_EXAMPLES raises it for a long local run; docs/RELIABILITY.md
records the long runs) and a per-example deadline, so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ColorizerError
from app.http_errors import http_status
from app.image_header import exif_orientation, read_header
from app.pipeline import prepare
from tests.conftest import Server
from tests.corpus import SEEDS, bmp_declaring, jpeg_declaring, png_declaring, tiff_with, webp_declaring

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
MAX_PIXELS = 1_000_000  # small, so the fuzzer meets the limit often and a bomb costs nothing
SIZE = 32  # model input size for prepare(); the real one does not matter to the decode path
REFUSALS = {(400, "empty_file"), (415, "unsupported_media_type"), (400, "undecodable_image"), (413, "too_many_pixels")}
T = TypeVar("T")
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=2),
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid small image of some format, then a few of: truncate, flip bits, overwrite, insert, delete, splice."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "splice"]))
        if op == "truncate":
            del data[at:]
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:  # another file's tail on this one's head: plausible headers over foreign data
            other = draw(st.sampled_from(SEEDS))
            data[at:] = other[draw(st.integers(0, len(other) - 1)) :]
    return bytes(data)


def declared_sizes() -> st.SearchStrategy[bytes]:
    """Headers declaring any size, including 0, negative and enormous ones."""
    dims = st.integers(-(2**31), 2**31 - 1)
    small = st.integers(0, 2**16 - 1)
    return st.one_of(
        st.builds(png_declaring, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
        st.builds(jpeg_declaring, small, small),
        st.builds(webp_declaring, st.integers(1, 2**24), st.integers(1, 2**24)),
        st.builds(bmp_declaring, dims, dims),
    )


def tiff_directories() -> st.SearchStrategy[bytes]:
    """TIFFs whose first directory holds arbitrary (tag, type, value) entries, often without the size tags."""
    entry = st.tuples(
        st.sampled_from([256, 257, 258, 259, 262, 273, 274, 277, 0]), st.integers(0, 18), st.integers(0, 2**32 - 1)
    )
    return st.builds(tiff_with, st.lists(entry, max_size=6))


ANY_BYTES = st.one_of(
    mutated_images(),
    declared_sizes(),
    tiff_directories(),
    st.binary(max_size=512),
    st.builds(
        lambda magic, rest: magic + rest,
        st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b"BM", b"II*\0", b"MM\0*"]),
        st.binary(max_size=256),
    ),
)


def refusal(fn: Callable[[bytes], T], data: bytes) -> tuple[T | None, ColorizerError | None]:
    """``fn(data)``, or the ColorizerError it raised; any other exception fails the test."""
    try:
        return fn(data), None
    except ColorizerError as exc:
        return None, exc


def decodes_or_refuses(data: bytes) -> None:
    """The property: a well-formed result within the pixel limit, or a ColorizerError with a documented 4xx."""
    prepared, error = refusal(lambda d: prepare(d, SIZE, MAX_PIXELS), data)
    if error is not None:
        assert (http_status(error), error.code) in REFUSALS
        return
    assert prepared is not None
    height, width = prepared.full_l.shape
    assert 0 < height * width <= MAX_PIXELS  # what was decoded is what the header declared, within the limit
    assert prepared.small_l.shape == (1, SIZE, SIZE)
    for lightness in (prepared.full_l, prepared.small_l):
        assert lightness.dtype == np.float32
        assert np.isfinite(lightness).all()
        assert lightness.min() >= -0.01
        assert lightness.max() <= 100.01
    if prepared.alpha is not None:
        assert prepared.alpha.shape == (height, width)


@FUZZ
@given(ANY_BYTES)
def test_decode_path_decodes_or_refuses_but_never_crashes(data: bytes) -> None:
    decodes_or_refuses(data)


@settings(FUZZ, max_examples=EXAMPLES * 10)  # header parsing is microseconds a case: afford many more
@given(st.one_of(ANY_BYTES, st.binary(max_size=64)))
def test_header_and_exif_readers_never_crash(data: bytes) -> None:
    header, error = refusal(read_header, data)
    if error is not None:
        assert (http_status(error), error.code) in REFUSALS
    else:
        assert header is not None
        assert min(header.width, header.height) > 0
    assert 1 <= exif_orientation(data) <= 8


def test_a_fuzzer_find_stays_fixed() -> None:
    """Found by the TIFF-directory strategy: no ImageWidth tag used to escape as a KeyError (a 500)."""
    with pytest.raises(ColorizerError) as err:
        read_header(b"II*\x00" + struct.pack("<IH", 8, 0) + b"\0\0\0\0")
    assert http_status(err.value) == 400


# ---- the HTTP API, from its own OpenAPI schema ------------------------------------------------------------------


@pytest.mark.slow
def test_api_never_answers_a_server_error(live_server: Server, subtests: pytest.Subtests) -> None:
    """Every operation in GET /openapi.json, with requests generated from its schema: no 5xx, ever; every status
    answered is one the schema declares; every error is the service's JSON error shape.

    (Driven from here rather than by schemathesis' pytest plugin, whose parametrize does not run on pytest 9.)
    """
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @settings(
            max_examples=max(EXAMPLES // 10, 10), deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=live_server.url, timeout=60)
            status, curl = response.status_code, case.as_curl_command()
            assert status < 500, f"{status} for {curl}"
            declared = case.operation.definition.raw["responses"]
            assert str(status) in declared, f"{status} is not in the schema of {case.operation.label}: {curl}"
            if status >= 400:  # the error contract: {"detail": sentence, "code": snake_case}, nothing else
                body = response.json()
                assert set(body) == {"detail", "code"}, f"{body} for {curl}"
                assert all(isinstance(v, str) and v for v in body.values()), f"{body} for {curl}"

        with subtests.test(operation=operation.label):
            call()
