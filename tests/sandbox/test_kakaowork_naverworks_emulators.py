"""The KakaoWork and NAVER WORKS emulators on the wire: auth checks, error shapes, JWT checks."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import jwt
import pytest

from moltbot.sandbox import Sandbox
from moltbot.sandbox.kakaowork import SANDBOX_KAKAOWORK_APP_KEY
from moltbot.sandbox.naverworks import (
    JWT_BEARER_GRANT,
    SANDBOX_BOT_ID,
    SANDBOX_CHANNEL_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_SERVICE_ACCOUNT,
    generate_private_key_pem,
    sandbox_naverworks_fields,
)


def kakaowork(sandbox: Sandbox, key: str = SANDBOX_KAKAOWORK_APP_KEY) -> httpx.Client:
    return httpx.Client(
        base_url=f"{sandbox.base_url}/kakaowork/v1",
        headers={"Authorization": f"Bearer {key}"},
    )


def test_kakaowork_wrong_app_key_answers_its_failure_shape(sandbox: Sandbox):
    with kakaowork(sandbox, "not-the-key") as client:
        response = client.get("/users.find_by_email", params={"email": "ops@moltbot.test"})

    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "error": {"code": "invalid_authentication", "message": "invalid app key"},
    }


def test_kakaowork_messages_send_takes_json_only_and_checks_block_kit(sandbox: Sandbox):
    with kakaowork(sandbox) as client:
        form = client.post("/messages.send", data={"conversation_id": "20001", "text": "안녕"})
        long_header = client.post(
            "/messages.send",
            json={
                "conversation_id": "20001",
                "text": "안녕",
                "blocks": [{"type": "header", "text": "가" * 21, "style": "blue"}],
            },
        )
        ok = client.post("/messages.send", json={"conversation_id": "20001", "text": "안녕하세요"})

    assert form.status_code == 400 and form.json()["error"]["code"] == "invalid_parameter"
    assert long_header.status_code == 400
    assert "blocks[0].text" in long_header.json()["error"]["message"]
    assert ok.json()["success"] is True and ok.json()["message"]["text"] == "안녕하세요"
    assert [m.text for m in sandbox.state.kakaowork.messages] == ["안녕하세요"]


def test_kakaowork_one_to_one_room_is_the_same_on_every_open(sandbox: Sandbox):
    with kakaowork(sandbox) as client:
        user = client.get("/users.find_by_email", params={"email": "ops@moltbot.test"}).json()
        first = client.post("/conversations.open", json={"user_id": user["user"]["id"]}).json()
        again = client.post("/conversations.open", json={"user_id": user["user"]["id"]}).json()
        unknown = client.get("/users.find_by_email", params={"email": "x@moltbot.test"})

    assert first["conversation"]["id"] == again["conversation"]["id"]
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "user_not_found"


def test_kakaowork_injected_429_names_a_wait(sandbox: Sandbox):
    sandbox.state.kakaowork.inject_fault(429, retry_after=3)
    with kakaowork(sandbox) as client:
        response = client.post("/messages.send", json={"conversation_id": "20001", "text": "a"})

    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "too_many_requests"


# -- NAVER WORKS -------------------------------------------------------------------------------


def assertion(private_key: str, *, iat: float | None = None, lifetime: int = 3600) -> str:
    issued = int(time.time() if iat is None else iat)
    claims = {
        "iss": SANDBOX_CLIENT_ID,
        "sub": SANDBOX_SERVICE_ACCOUNT,
        "iat": issued,
        "exp": issued + lifetime,
    }
    return jwt.encode(claims, private_key, algorithm="RS256")


def token_form(signed: str, grant_type: str = JWT_BEARER_GRANT) -> dict[str, str]:
    return {
        "assertion": signed,
        "grant_type": grant_type,
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "scope": "bot",
    }


@pytest.fixture
def fields(sandbox: Sandbox) -> dict[str, str]:
    return sandbox_naverworks_fields(sandbox.base_url)


@pytest.mark.parametrize(
    "grant_type", [JWT_BEARER_GRANT, quote(JWT_BEARER_GRANT)], ids=["once", "twice"]
)
def test_naverworks_token_accepts_grant_type_encoded_once_or_twice(
    sandbox: Sandbox, fields: dict[str, str], grant_type: str
):
    response = httpx.post(
        fields["auth_url"], data=token_form(assertion(fields["private_key"]), grant_type)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == "86400"
    [logged] = sandbox.state.naverworks.token_requests
    assert logged.grant_type == grant_type


@pytest.mark.parametrize(
    ("make_assertion", "error"),
    [
        # Signed with a key the server never saw: a forgery.
        (lambda key: assertion(generate_private_key_pem()), "invalid_grant"),
        # Expired an hour ago.
        (lambda key: assertion(key, iat=time.time() - 7200), "invalid_grant"),
        # Valid for a day: longer than the hour the server allows.
        (lambda key: assertion(key, lifetime=86400), "invalid_grant"),
        # The signature bytes of a valid assertion changed.
        (lambda key: assertion(key)[:-4] + "AAAA", "invalid_grant"),
    ],
    ids=["forged", "expired", "too-long", "tampered"],
)
def test_naverworks_token_refuses_bad_assertions(
    sandbox: Sandbox, fields: dict[str, str], make_assertion, error: str
):
    response = httpx.post(
        fields["auth_url"], data=token_form(make_assertion(fields["private_key"]))
    )

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert sandbox.state.naverworks.tokens_issued == 0


def test_naverworks_token_refuses_a_wrong_client_secret(fields: dict[str, str]):
    form = token_form(assertion(fields["private_key"])) | {"client_secret": "wrong"}

    response = httpx.post(fields["auth_url"], data=form)

    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_naverworks_messages_need_a_bearer_token_and_answer_201(
    sandbox: Sandbox, fields: dict[str, str]
):
    url = f"{fields['api_base']}/bots/{SANDBOX_BOT_ID}/channels/{SANDBOX_CHANNEL_ID}/messages"
    body = {"content": {"type": "text", "text": "안녕하세요"}}
    token = httpx.post(fields["auth_url"], data=token_form(assertion(fields["private_key"])))
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}

    anonymous = httpx.post(url, json=body)
    accepted = httpx.post(url, json=body, headers=bearer)
    unknown_bot = httpx.post(url.replace(SANDBOX_BOT_ID, "999"), json=body, headers=bearer)

    assert anonymous.status_code == 401 and anonymous.json()["code"] == "UNAUTHORIZED"
    assert accepted.status_code == 201 and accepted.content == b""
    assert unknown_bot.status_code == 404
    assert [m.text for m in sandbox.state.naverworks.messages] == ["안녕하세요"]


def test_naverworks_rate_limit_answers_429_with_rate_limit_headers(
    sandbox: Sandbox, fields: dict[str, str]
):
    sandbox.state.naverworks.set_rate_limit(1)
    url = f"{fields['api_base']}/bots/{SANDBOX_BOT_ID}/channels/{SANDBOX_CHANNEL_ID}/messages"
    token = httpx.post(fields["auth_url"], data=token_form(assertion(fields["private_key"])))
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    body = {"content": {"type": "text", "text": "a"}}

    httpx.post(url, json=body, headers=bearer)
    limited = httpx.post(url, json=body, headers=bearer)

    assert limited.status_code == 429
    assert limited.json() == {"code": "TOO_MANY_REQUESTS", "description": "API rate limit exceeded"}
    assert limited.headers["rateLimit-limit"] == "1"
    assert limited.headers["rateLimit-remaining"] == "0"
    assert int(limited.headers["rateLimit-reset"]) >= 1
    assert "Retry-After" not in limited.headers
