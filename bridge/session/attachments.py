"""Guest attachments in ``message.send`` (protocol reference §4.6, §11.10).

For each file: get the bytes (decode ``content_base64`` or download ``url``, size-limited), check name,
type and size against the session's ``allowedMedia`` / ``blockedExtensions`` (§4.6, §5.1), ask for a
presigned URL (``onAttachment``), PUT the bytes with *every* presign header, then wait for
``UploadSuccessEvent`` before the message may reference the id (otherwise Genesys answers 4010).

Every failure raises :class:`AttachmentFailed` with a clear detail; the actor turns it into a ``failed``
outcome with reason ``attachment_failed``.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import uuid
from collections.abc import Mapping, Sequence
from functools import partial

from bridge.contract.content import AttachmentUpload
from bridge.errors import BridgeError
from bridge.genesys.events import Configured, ErrorReceived, UploadFailed, UploadSucceeded, UploadUrlIssued
from bridge.genesys.protocol import GuestProtocol
from bridge.session.link import GenesysLink
from bridge.session.ports import UploadClient

__all__ = ["DEFAULT_MAX_FILE_BYTES", "AttachmentFailed", "attachment_key", "check_file", "upload_attachments"]

#: 10 MB: Genesys' documented maximum when the deployment does not say (§8).
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024


class AttachmentFailed(BridgeError):
    """An attachment could not be prepared or uploaded; ``detail`` says which and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def attachment_key(attachment_id: str) -> str:
    """The waiter key the actor resolves for presign, upload success and upload failure frames."""
    return f"attachment:{attachment_id}"


def max_file_bytes(limits: Configured | None) -> int:
    if limits is not None and limits.max_file_size_kb:
        return limits.max_file_size_kb * 1024
    return DEFAULT_MAX_FILE_BYTES


def check_file(upload: AttachmentUpload, size: int, limits: Configured | None) -> None:
    """Raise :class:`AttachmentFailed` when the deployment would refuse this file (§4.6 limits)."""
    name = upload.file_name
    if "." not in name.strip(".") or name.endswith("."):
        raise AttachmentFailed(f"{name}: a file extension is required")
    extension = "." + name.rsplit(".", 1)[1].lower()
    if limits is not None:
        blocked = {b.lower() if b.startswith(".") else "." + b.lower() for b in limits.blocked_extensions}
        if extension in blocked:
            raise AttachmentFailed(f"{name}: extension {extension} is blocked by the deployment")
        allowed = limits.allowed_mime_types
        if allowed and not any(fnmatch.fnmatch(upload.mime_type.lower(), pattern.lower()) for pattern in allowed):
            raise AttachmentFailed(f"{name}: type {upload.mime_type} is not allowed ({', '.join(allowed)})")
    limit = max_file_bytes(limits)
    if size > limit:
        raise AttachmentFailed(f"{name}: {size} bytes is over the {limit} byte limit")
    if size == 0:
        raise AttachmentFailed(f"{name}: the file is empty")


async def _content(upload: AttachmentUpload, uploads: UploadClient, limit: int) -> bytes:
    if upload.content_base64 is not None:
        try:
            return base64.b64decode(upload.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AttachmentFailed(f"{upload.file_name}: content_base64 is not valid base64") from exc
    assert upload.url is not None  # the contract requires exactly one source
    try:
        return await uploads.fetch_bytes(upload.url, max_bytes=limit)
    except BridgeError as exc:
        raise AttachmentFailed(f"{upload.file_name}: download failed: {exc}") from exc


async def _put(
    uploads: UploadClient, upload: AttachmentUpload, url: str, headers: Mapping[str, str], content: bytes
) -> None:
    try:
        await uploads.upload(url, headers, content, upload.mime_type)
    except BridgeError as exc:
        raise AttachmentFailed(f"{upload.file_name}: upload PUT failed: {exc}") from exc


async def upload_attachments(
    link: GenesysLink,
    uploads: UploadClient,
    files: Sequence[AttachmentUpload],
    *,
    command_id: str,
    timeout_s: float,
) -> list[str]:
    """Upload ``files`` in order and return their Genesys attachment ids, ready to reference (§4.3 e).

    Attachment ids are derived from ``command_id`` so a redelivered command reuses them.
    Raises:
        AttachmentFailed: any step failed (the message must not be sent).
        GenesysUnavailable, SessionGone: the socket or session went away (the actor handles these).
    """
    ids: list[str] = []
    limits = link.limits
    for index, upload in enumerate(files):
        content = await _content(upload, uploads, max_file_bytes(limits))
        check_file(upload, len(content), limits)
        attachment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"genesys-bridge:{command_id}:{index}"))
        key = attachment_key(attachment_id)
        try:
            issued = await link.request(
                key,
                partial(
                    GuestProtocol.request_upload,
                    tracing_id=attachment_id,
                    attachment_id=attachment_id,
                    file_name=upload.file_name,
                    file_type=upload.mime_type,
                    file_size=len(content),
                ),
                timeout_s=timeout_s,
            )
        except TimeoutError:
            raise AttachmentFailed(f"{upload.file_name}: no presigned URL within {timeout_s:g}s") from None
        match issued:
            case UploadUrlIssued(url=url, headers=headers):
                pass
            case UploadFailed(code=code, detail=detail) | ErrorReceived(code=code, detail=detail):
                raise AttachmentFailed(f"{upload.file_name}: Genesys refused the upload ({code}): {detail}")
            case _:
                raise AttachmentFailed(f"{upload.file_name}: unexpected reply {type(issued).__name__}")

        try:
            # The PUT goes over HTTP; Genesys answers it over the socket (UploadSuccessEvent, §4.6).
            result = await link.request(
                key, None, trigger=partial(_put, uploads, upload, url, headers, content), timeout_s=timeout_s
            )
        except TimeoutError:
            raise AttachmentFailed(f"{upload.file_name}: no UploadSuccessEvent within {timeout_s:g}s") from None
        match result:
            case UploadSucceeded():
                ids.append(attachment_id)
            case UploadFailed(code=code, detail=detail):
                raise AttachmentFailed(f"{upload.file_name}: Genesys rejected the file ({code}): {detail}")
            case _:
                raise AttachmentFailed(f"{upload.file_name}: unexpected reply {type(result).__name__}")
    return ids
