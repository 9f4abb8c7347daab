"""Tokens file, roles and the Gate: who may call what, and what refusals say."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from apikit import LEGACY, TOKENS, ApiKit
from tocsin.api import auth
from tocsin.api.auth import Gate
from tocsin.tokens import (
    ApiToken,
    Role,
    TokenError,
    new_token,
    parse_tokens,
    read_secret,
    read_tokens,
    token_digest,
    token_line,
)

HASH = "sha256:" + "ab" * 32


def test_hashed_lines_give_principal_role_and_digest() -> None:
    """Test that PRINCIPAL ROLE sha256:HEX lines parse, with comments and blank lines skipped."""
    text = f"# ops\n\nalice operator {HASH}\n  bob   viewer   sha256:{'cd' * 32}  \n"
    assert parse_tokens(text, "tokens") == [
        ApiToken("alice", Role.OPERATOR, bytes.fromhex("ab" * 32)),
        ApiToken("bob", Role.VIEWER, bytes.fromhex("cd" * 32)),
    ]


def test_a_new_token_and_its_line_let_that_token_in() -> None:
    """Test that token_line() hashes the token: the file never holds it, yet it is known."""
    token = new_token()
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    line = token_line("ci@build", Role.ADMIN, token)
    assert token not in line
    assert line == f"ci@build admin sha256:{hashlib.sha256(token.encode()).hexdigest()}"
    gate = Gate(parse_tokens(line, "tokens"))
    found = gate.identify(token)
    assert found is not None
    assert (found.principal, found.role) == ("ci@build", Role.ADMIN)
    assert gate.identify(token + "x") is None


def test_bare_tokens_still_work_as_operators_named_by_line() -> None:
    """Test the deprecated format: a bare token is role operator, principal token-<line>."""
    tokens = parse_tokens(f"# old style\n{LEGACY}\nalice admin {HASH}\n", "tokens")
    assert tokens[0] == ApiToken("token-2", Role.OPERATOR, token_digest(LEGACY), legacy=True)
    assert not tokens[1].legacy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short\n", "t:1: a token must be at least 16 characters"),
        (f"alice root {HASH}\n", "t:1: unknown role 'root'; use viewer, operator or admin"),
        ("alice viewer sha256:ABCD\n", "t:1: the third field must be sha256: and 64 lowercase"),
        (f"alice viewer {HASH[7:]}\n", "t:1: the third field must be sha256:"),
        (f"al/ice viewer {HASH}\n", "t:1: principal 'al/ice' must be 1-64 letters, digits"),
        (f"token-3 viewer {HASH}\n", "t:1: principal 'token-3' must be"),
        ("alice viewer\n", "t:1: write PRINCIPAL ROLE sha256:HEX (or, deprecated, a bare token)"),
        (f"\na viewer {HASH}\nb admin {HASH}\n", "t:3: the same token as line 2"),
    ],
)
def test_bad_lines_are_refused_at_file_and_line(text: str, message: str) -> None:
    """Test that each mistake in a tokens file names the file, the line and the fix."""
    with pytest.raises(TokenError) as caught:
        parse_tokens(text, "t")
    assert str(caught.value).startswith(message)


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    """Test that a missing tokens file, or a client token file holding a hash line, is refused."""
    with pytest.raises(TokenError, match=r"cannot read http\.tokens_file"):
        read_tokens(tmp_path / "missing")
    secret = tmp_path / "mine"
    secret.write_text(f"alice operator {HASH}\n")
    with pytest.raises(TokenError, match="must hold the token itself"):
        read_secret(secret)
    secret.write_text("# mine\n  s3cret-token  \n")
    assert read_secret(secret) == "s3cret-token"


@pytest.mark.parametrize("position", [0, 2, None])
def test_identify_compares_hashes_with_every_token(
    monkeypatch: pytest.MonkeyPatch, position: int | None
) -> None:
    """Test that the gate compares the offered token's hash with each known hash, always all
    of them, whether the first, the last or none matches (no early exit to time)."""
    secrets = [new_token() for _ in range(3)]
    gate = Gate([ApiToken(f"p{i}", Role.VIEWER, token_digest(s)) for i, s in enumerate(secrets)])
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    offered = secrets[position] if position is not None else new_token()
    found = gate.identify(offered)
    assert (found.principal if found else None) == (
        f"p{position}" if position is not None else None
    )
    assert len(compared) == 3
    assert {a for a, _ in compared} == {token_digest(offered)}  # never the token itself


def test_missing_and_unknown_tokens_get_401_with_a_bearer_challenge(api: ApiKit) -> None:
    """Test 401 bodies and WWW-Authenticate for no token, another scheme and an unknown one."""
    path = "/api/v1/incidents/1/acknowledge"
    missing = api.request("POST", path, {})
    assert (missing.status, missing.body) == (401, {"error": "send Authorization: Bearer <token>"})
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="tocsin"'
    basic = api.request("POST", path, {}, headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert basic.status == 401
    unknown = api.request("POST", path, {}, token="not-a-known-token-at-all")
    assert (unknown.status, unknown.body) == (401, {"error": "unknown token"})
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]


def test_a_role_too_low_gets_403_naming_the_role_needed(api: ApiKit) -> None:
    """Test that a viewer cannot change, an operator cannot read the config, an admin can."""
    incident = api.open_incident()
    refused = api.request(
        "POST", f"/api/v1/incidents/{incident}/acknowledge", {}, token=TOKENS["viewer"]
    )
    assert (refused.status, refused.body) == (
        403,
        {"error": "this needs the operator role; vera has viewer"},
    )
    config = api.request("GET", "/api/v1/config", token=TOKENS["operator"])
    assert (config.status, config.body) == (
        403,
        {"error": "this needs the admin role; olga has operator"},
    )
    described = api.request("GET", "/api/v1/config", token=TOKENS["admin"])
    assert described.status == 200
    assert described.body["config"].endswith("tocsin.yaml")
    ack = api.request(
        "POST", f"/api/v1/incidents/{incident}/acknowledge", {}, token=TOKENS["admin"]
    )
    assert (ack.status, ack.body["state"]) == (200, "acknowledged")


def test_changes_record_the_principal_and_the_body_cannot_say_otherwise(api: ApiKit) -> None:
    """Test that the timeline's actor is the token's principal; a bare token acts as token-N."""
    incident = api.open_incident()
    forged = api.request(
        "POST", f"/api/v1/incidents/{incident}/comments", {"text": "hi", "actor": "root"},
        token=TOKENS["operator"],
    )  # fmt: skip
    assert (forged.status, forged.body["error"]) == (
        400,
        "unknown field(s): actor; known: text",
    )
    assert (
        api.request(
            "POST",
            f"/api/v1/incidents/{incident}/comments",
            {"text": "mine"},
            token=TOKENS["operator"],
        ).status
        == 201
    )
    assert (
        api.request("POST", f"/api/v1/incidents/{incident}/acknowledge", {}, token=LEGACY).status
        == 200
    )
    timeline = api.request("GET", f"/api/v1/incidents/{incident}/timeline").body["timeline"]
    assert [(e["kind"], e["actor"]) for e in timeline] == [
        ("state", "tocsin"),
        ("comment", "olga"),
        ("state", "token-2"),
    ]


def test_reads_are_open_unless_open_reads_is_off(tmp_path: Path) -> None:
    """Test that with open_reads false every read needs a viewer token, but health, metrics
    and the OpenAPI document stay open."""
    with ApiKit(tmp_path, open_reads=False) as api:
        for path in (
            "/api/v1/incidents",
            "/api/v1/oncall",
            "/api/v1/silences",
            "/api/v1/maintenance",
        ):
            assert api.request("GET", path).status == 401, path
            assert api.request("GET", path, token=TOKENS["viewer"]).status == 200, path
        for path in ("/healthz", "/metrics", "/api/v1/openapi.json"):
            assert api.request("GET", path).status == 200, path
        document = api.request("GET", "/api/v1/openapi.json").body
        assert document["paths"]["/api/v1/incidents"]["get"]["security"] == [{"bearer": []}]


def test_without_tokens_changes_are_off(tmp_path: Path) -> None:
    """Test that an empty tokens file refuses every change with 403, saying how to enable it."""
    with ApiKit(tmp_path, tokens="# nobody yet\n") as api:
        refused = api.request("POST", "/api/v1/silences", {}, token=TOKENS["admin"])
        assert (refused.status, refused.body["error"]) == (
            403,
            "no API tokens are configured (http.tokens_file); changes are off",
        )
        assert api.request("GET", "/api/v1/incidents").status == 200


def test_silences_and_maintenance_changes_need_an_operator(api: ApiKit) -> None:
    """Test that creating and ending silences and windows needs the operator role."""
    silence = {"matchers": ["host=web1"], "duration": "1h", "created_by": "o", "comment": "c"}
    assert api.request("POST", "/api/v1/silences", silence, token=TOKENS["viewer"]).status == 403
    made = api.request("POST", "/api/v1/silences", silence, token=TOKENS["operator"])
    assert made.status == 201
    assert (
        api.request("DELETE", f"/api/v1/silences/{made.body['id']}", token=TOKENS["viewer"]).status
        == 403
    )
    window = {**silence, "name": "w"}
    assert api.request("POST", "/api/v1/maintenance", window).status == 401
    assert (
        api.request("POST", "/api/v1/maintenance", window, token=TOKENS["operator"]).status == 201
    )
    assert api.request("DELETE", "/api/v1/maintenance/w", token=TOKENS["viewer"]).status == 403
