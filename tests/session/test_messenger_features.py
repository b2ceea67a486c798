"""``session.started.features``: the contract's view of a deployment's Messenger features, one object per
distinct set of features, shared by the sessions that have it."""

from __future__ import annotations

from bridge.genesys.deployment_config import DeploymentFeatures, UploadMode
from bridge.session.session import messenger_features


def test_equal_features_give_one_shared_object_and_different_ones_their_own() -> None:
    def found(clear: bool) -> DeploymentFeatures:
        modes = (UploadMode(("image/png", "image/jpeg"), 100), UploadMode(("image/png", "application/pdf"), 200))
        return DeploymentFeatures(
            clear_enabled=clear, disconnect_enabled=True, disconnect_mode="send", upload_modes=modes
        )

    shared = messenger_features(found(clear=True))
    assert messenger_features(found(clear=True)) is shared  # equal features from a later fetch: the same object
    assert shared.model_dump() == {
        "clear": True,
        "disconnect": "send",
        "user_typing": None,
        "autostart": None,
        "upload_types": ["image/png", "image/jpeg", "application/pdf"],
        "max_upload_bytes": 200 * 1024,
    }
    other = messenger_features(found(clear=False))
    assert other is not shared
    assert other.clear is False
