"""docs/contract/asyncapi.html, the rendered AsyncAPI document, is there and not behind asyncapi.json.

The page is made by `make asyncapi-html` (Node.js and npm); the suite must not need either, so these tests
only read the checked-in page. They cannot prove it byte-for-byte current, but they catch the usual drift:
a message, channel or version added to asyncapi.json without the page being regenerated.

Only the server-rendered part of the page counts (from ``<body`` to the first ``<script``): the page also
embeds the whole document as JSON for its scripts, where every name would be found even if the template
had rendered none of it.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_JSON = ROOT / "docs" / "contract" / "asyncapi.json"
ASYNCAPI_HTML = ROOT / "docs" / "contract" / "asyncapi.html"
REGENERATE = "regenerate it with `make asyncapi-html` (needs Node.js and npm) and commit the result"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASYNCAPI_JSON.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def page() -> str:
    assert ASYNCAPI_HTML.is_file(), f"docs/contract/asyncapi.html is missing: {REGENERATE}"
    return ASYNCAPI_HTML.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rendered_text(page: str) -> str:
    """The visible text the template rendered: tags dropped, entities decoded, whitespace collapsed."""
    start, end = page.find("<body"), page.find("<script")
    assert 0 <= start < end, "asyncapi.html has no server-rendered body before its scripts"
    text = html.unescape(re.sub(r"<[^>]+>", " ", page[start:end]))
    return " ".join(text.split())


def test_the_page_names_every_message(document: dict[str, Any], rendered_text: str) -> None:
    messages: dict[str, Any] = document["components"]["messages"]
    missing = [key for key, m in messages.items() if key not in rendered_text or m["name"] not in rendered_text]
    assert not missing, f"asyncapi.html does not show messages {missing}: {REGENERATE}"


def _channel_mark(channel: dict[str, Any]) -> str:
    """What the page shows of a channel: the template lists channels under the operations that use them, by
    address, not by title. A reply channel has no address (the command's ``reply_to`` is); the page shows
    its description then, as Markdown, hence without backticks."""
    if channel.get("address"):
        return str(channel["address"])
    return str(channel["description"]).split(". ")[0].replace("`", "")


def test_the_page_names_every_channel(document: dict[str, Any], rendered_text: str) -> None:
    channels: dict[str, Any] = document["channels"]
    missing = [name for name, channel in channels.items() if _channel_mark(channel) not in rendered_text]
    assert not missing, f"asyncapi.html does not show channels {missing}: {REGENERATE}"


def test_the_page_carries_the_documents_version(document: dict[str, Any], rendered_text: str) -> None:
    title, version = document["info"]["title"], document["info"]["version"]
    assert f"{title} {version}" in rendered_text, f"asyncapi.html is not for version {version}: {REGENERATE}"


def test_the_page_fetches_nothing_when_opened(page: str) -> None:
    # Integrators open it from a checkout or an air-gapped mirror: scripts and styles must be inline.
    external = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(?!data:|#)[^\"]+\"", page)
    assert not external, f"asyncapi.html loads {external}: generate it with singleFile=true"
