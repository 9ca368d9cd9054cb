"""Keys: what a keyless, wrong-keyed or ordinary-keyed client can and cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Server, keyed_server

#: The run's keyed server (tests/conftest.py): "user-key" among its API keys, "admin-key" its
#: admin key, and a model "other" no test loads; a test that changes the default model puts it back.
keyed = keyed_server


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_missing_key_is_told_apart_from_a_wrong_one(keyed: Server) -> None:
    missing = keyed.client.get("/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert "didn't provide an API key" in missing.json()["error"]["message"]
    wrong = keyed.client.get("/v1/models", headers=_auth("guess"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "Incorrect API key" in wrong.json()["error"]["message"]
    empty = keyed.client.get("/v1/models", headers={"Authorization": "Bearer"})
    assert empty.status_code == 401
    assert keyed.client.get("/v1/models", headers=_auth("user-key")).status_code == 200


def test_only_an_admin_key_changes_the_server_wide_default_model(keyed: Server) -> None:
    as_user = keyed.client.post("/v1/settings/model", json={"model_id": "other"}, headers=_auth("user-key"))
    assert as_user.status_code == 401
    models = keyed.client.get("/v1/models", headers=_auth("user-key")).json()["data"]
    assert [m["id"] for m in models if m["default"]] == ["tiny.en"]

    as_admin = keyed.client.post("/v1/settings/model", json={"model_id": "other"}, headers=_auth("admin-key"))
    assert as_admin.status_code == 200 and as_admin.json()["model"] == "other"
    keyed.client.post("/v1/settings/model", json={"model_id": "tiny.en"}, headers=_auth("admin-key"))


def test_the_api_description_needs_a_key_and_its_pages_are_off(keyed: Server) -> None:
    assert keyed.client.get("/openapi.json").status_code == 401
    described = keyed.client.get("/openapi.json", headers=_auth("user-key"))
    assert described.status_code == 200 and "/v1/audio/transcriptions" in described.json()["paths"]
    for page in ("/docs", "/redoc"):
        response = keyed.client.get(page, headers=_auth("user-key"))
        assert response.status_code == 404 and "openapi.json" in response.json()["error"]["message"]


def test_without_keys_the_api_pages_are_open(shared_server: Server) -> None:
    server = shared_server
    assert "swagger" in server.client.get("/docs").text.lower()
    assert server.client.get("/redoc").status_code == 200
    assert "/v1/models" in server.client.get("/openapi.json").json()["paths"]


def test_invalid_json_names_the_body_not_a_position(keyed: Server) -> None:
    response = keyed.client.post(
        "/v1/settings/model",
        content=b'{"model_id": ',
        headers={**_auth("admin-key"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] is None and "JSON" in error["message"]


@pytest.mark.parametrize("ttl", ["1e20", "99999999999", "-2"])
def test_an_absurd_ttl_is_refused(keyed: Server, ttl: str) -> None:
    response = keyed.client.post("/v1/model/load", params={"model": "other", "ttl": ttl}, headers=_auth("admin-key"))
    assert response.status_code == 400 and response.json()["error"]["param"] == "ttl"
    assert keyed.model("other")["state"] == "unloaded"


@pytest.mark.parametrize("keys", ['[""]', '["  "]', '["good", ""]'])
def test_empty_keys_are_a_configuration_error(tmp_path: Path, keys: str) -> None:
    from supervisor.config import ConfigError, load_settings

    config = tmp_path / "asr.toml"
    config.write_text(f"[server]\napi_keys = {keys}\n")
    with pytest.raises(ConfigError, match="api_keys"):
        load_settings(config)
    config.write_text(f"[server]\nadmin_keys = {keys}\n")
    with pytest.raises(ConfigError, match="admin_keys"):
        load_settings(config)
