"""Attachments (§4.6): presign, the PUT upload, scan result events, refresh and delete.

Flow: ``onAttachment`` → ``PresignedUrlResponse`` whose ``url`` is this server's ``PUT /uploads/<id>``
and whose ``headers`` carry an ``x-amz-tagging`` value the PUT must repeat → the HTTP layer calls
:func:`complete_upload` → ``UploadSuccessEvent`` or ``UploadFailureEvent`` to every connection of the
session. A file name containing ``virus`` fails the simulated scan (4003), so tests can reach that path.
"""

from __future__ import annotations

import os
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from bridge.simulator.session import Attachment, AttachmentStatus
from bridge.simulator.wire import envelope, iso_now

if TYPE_CHECKING:
    from bridge.simulator.connection import Connection
    from bridge.simulator.engine import Engine
    from bridge.simulator.session import Session

__all__ = ["PRESIGN_HEADER", "complete_upload", "delete_attachment", "get_attachment", "on_attachment"]

PRESIGN_HEADER = "x-amz-tagging"
_MAX_NAME_CHARS = 255


def _type_allowed(engine: Engine, file_type: str) -> bool:
    allowed = engine.config.allowed_media
    family = file_type.split("/", 1)[0] + "/*"
    return "*/*" in allowed or file_type in allowed or family in allowed


def _refusal(engine: Engine, file_name: str, file_type: str, file_size: object) -> tuple[int, str] | None:
    """The GenerateUrlError code and text for a file that may not be uploaded, or None."""
    extension = os.path.splitext(file_name)[1].lower()
    if not file_name or not file_type:
        return 4020, "Missing parameter: fileName and fileType are required"
    if len(file_name) > _MAX_NAME_CHARS:
        return 4005, "File name too long"
    if not extension:
        return 4004, "File name invalid: an extension is required"
    if extension in engine.config.blocked_extensions or not _type_allowed(engine, file_type):
        return 4001, f"File type {file_type} ({extension}) is not allowed"
    if not isinstance(file_size, int) or file_size < 0 or file_size > engine.config.max_file_bytes():
        return 4002, f"File size invalid: at most {engine.config.max_file_size_kb} KB"
    return None


def on_attachment(
    engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None
) -> None:
    """Presign an upload, or refuse it with ``GenerateUrlError`` (type "message", code 200, per the fixture)."""
    attachment_id = str(request.get("attachmentId") or uuid.uuid4())
    file_name = str(request.get("fileName") or "")
    file_type = str(request.get("fileType") or "")
    file_size = request.get("fileSize")
    refusal = _refusal(engine, file_name, file_type, file_size)
    if refusal is not None:
        body = {"attachmentId": attachment_id, "errorCode": refusal[0], "errorMessage": refusal[1]}
        frame = envelope("GenerateUrlError", body, kind="message", tracing_id=engine.error_tracing(tracing_id))
        engine.reply(conn, frame)
        return
    assert isinstance(file_size, int)  # checked by _refusal
    attachment = Attachment(
        attachment_id=attachment_id,
        file_name=file_name,
        file_type=file_type,
        file_size=file_size,
        upload_tag=f"sim={secrets.token_hex(8)}",
    )
    session.attachments[attachment_id] = attachment
    engine.uploads[attachment_id] = (session, attachment)
    body = {
        "attachmentId": attachment_id,
        "url": f"{engine.base_url()}/uploads/{attachment_id}",
        "headers": {PRESIGN_HEADER: attachment.upload_tag},
        "fileName": file_name,
        "fileSize": file_size,
        "fileType": file_type,
    }
    engine.reply(conn, envelope("PresignedUrlResponse", body, tracing_id=tracing_id))


def complete_upload(engine: Engine, attachment_id: str, tag: str | None, data: bytes, too_big: bool) -> int:
    """The PUT arrived: check it, store the bytes, tell the session. Returns the HTTP status for the PUT.

    403 when the presign header is missing or wrong (as a signed S3 URL would, §11.10), 404 for an
    unknown id; 200 otherwise, with the scan verdict sent over the socket.
    """
    found = engine.uploads.get(attachment_id)
    if found is None:
        return 404
    session, attachment = found
    if tag != attachment.upload_tag:
        return 403
    if attachment.status is not AttachmentStatus.PENDING:
        return 409
    failure: tuple[int, str] | None = None
    if too_big:
        failure = (4002, f"File size invalid: at most {engine.config.max_file_size_kb} KB")
    elif "virus" in attachment.file_name.lower():
        failure = (4003, "File content invalid")
    if failure is not None:
        attachment.status = AttachmentStatus.FAILED
        body: dict[str, Any] = {
            "attachmentId": attachment_id,
            "errorCode": failure[0],
            "errorMessage": failure[1],
            "timestamp": iso_now(),
        }
        engine.broadcast(session, envelope("UploadFailureEvent", body, kind="message"))
        engine.changed()
        return 400 if too_big else 200
    attachment.status = AttachmentStatus.UPLOADED
    attachment.data = data
    engine.blobs[attachment_id] = (data, attachment.file_type, attachment.file_name)
    body = {"attachmentId": attachment_id, "downloadUrl": download_url(engine, attachment_id), "timestamp": iso_now()}
    engine.broadcast(session, envelope("UploadSuccessEvent", body, kind="message"))
    engine.changed()
    return 200


def download_url(engine: Engine, attachment_id: str) -> str:
    return f"{engine.base_url()}/downloads/{attachment_id}"


def get_attachment(
    engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None
) -> None:
    """A fresh download URL: PresignedUrlResponse with empty ``headers`` and ``fileSize`` set (§4.6)."""
    attachment = session.attachments.get(str(request.get("attachmentId")))
    if attachment is None or attachment.status not in (AttachmentStatus.UPLOADED, AttachmentStatus.SENT):
        engine.refuse(conn, 4009, "Attachment not found", tracing_id)
        return
    body = {
        "attachmentId": attachment.attachment_id,
        "url": download_url(engine, attachment.attachment_id),
        "headers": {},
        "fileName": attachment.file_name,
        "fileSize": len(attachment.data),
        "fileType": attachment.file_type,
    }
    engine.reply(conn, envelope("PresignedUrlResponse", body, tracing_id=tracing_id))


def delete_attachment(
    engine: Engine, conn: Connection, session: Session, request: dict[str, Any], tracing_id: str | None
) -> None:
    """Delete an uploaded, not yet sent attachment → AttachmentDeletedResponse (type "message", fixture)."""
    attachment_id = str(request.get("attachmentId"))
    attachment = session.attachments.get(attachment_id)
    if attachment is None or attachment.status in (AttachmentStatus.SENT, AttachmentStatus.DELETED):
        engine.refuse(conn, 4009, "Attachment not found", tracing_id)
        return
    attachment.status = AttachmentStatus.DELETED
    engine.uploads.pop(attachment_id, None)
    engine.blobs.pop(attachment_id, None)
    body = {"attachmentId": attachment_id}
    engine.reply(conn, envelope("AttachmentDeletedResponse", body, kind="message", tracing_id=tracing_id))
