"""Attachments in message.send (§4.6): decode or fetch, check, presign, PUT, wait, then send."""

from __future__ import annotations

import base64

import pytest

from genesys_bridge_client.contract import MessageSend
from genesys_bridge_client.contract.content import AttachmentUpload
from tests.session.conftest import running

pytestmark = pytest.mark.looptime

PNG = base64.b64encode(b"\x89PNG" + b"0" * 64).decode()


async def send_with(h, *files: AttachmentUpload, text: str | None = "see attached"):  # type: ignore[no-untyped-def]
    command = MessageSend(command_id="att", session_id="s1", text=text, attachments=list(files))
    await h.submit(command)
    return await h.sink.wait_outcome("att")


async def test_base64_attachment_is_uploaded_then_referenced() -> None:
    async with running() as h:
        await h.start()
        outcome = await send_with(h, AttachmentUpload(file_name="r.png", mime_type="image/png", content_base64=PNG))
        assert outcome.status == "delivered", outcome
        ((url, headers, size, mime),) = h.uploads.puts
        assert headers == {"x-amz-tagging": "abc"}  # every presign header is sent (§11.10)
        assert (size, mime) == (68, "image/png")
        message = next(f for f in h.peer.received if f.get("message", {}).get("text") == "see attached")
        (item,) = message["message"]["content"]
        assert item["contentType"] == "Attachment"
        assert url.endswith(item["attachment"]["id"])


async def test_attachment_from_url() -> None:
    async with running() as h:
        await h.start()
        upload = AttachmentUpload(file_name="a.png", mime_type="image/png", url="https://files.invalid/a.png")
        assert (await send_with(h, upload)).status == "delivered"


@pytest.mark.parametrize(
    ("upload", "needle"),
    [
        (AttachmentUpload(file_name="r.gif", mime_type="image/gif", content_base64=PNG), "not allowed"),
        (AttachmentUpload(file_name="r.exe", mime_type="image/png", content_base64=PNG), "blocked"),
        (AttachmentUpload(file_name="noext", mime_type="image/png", content_base64=PNG), "extension"),
        (AttachmentUpload(file_name="r.png", mime_type="image/png", content_base64="***"), "base64"),
        (AttachmentUpload(file_name="r.png", mime_type="image/png", url="https://files.invalid/404"), "download"),
        (
            AttachmentUpload(
                file_name="big.png", mime_type="image/png", content_base64=base64.b64encode(b"0" * 20_000).decode()
            ),
            "limit",
        ),
    ],
)
async def test_bad_attachments_fail_clearly(upload: AttachmentUpload, needle: str) -> None:
    async with running() as h:
        await h.start()
        outcome = await send_with(h, upload)
        assert (outcome.status, outcome.reason) == ("failed", "attachment_failed")
        assert needle in outcome.detail
        assert "see attached" not in h.peer.sent_texts()


async def test_upload_rejected_by_genesys_fails() -> None:
    async with running() as h:
        await h.start()
        h.uploads.fail_scan = True
        outcome = await send_with(h, AttachmentUpload(file_name="r.png", mime_type="image/png", content_base64=PNG))
        assert (outcome.status, outcome.reason) == ("failed", "attachment_failed")
        assert "virus" in outcome.detail
