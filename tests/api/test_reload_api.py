"""POST /api/v1/reload: admin only, answered with the reload's outcome."""

from __future__ import annotations

from apikit import TOKENS, ApiKit


def test_only_an_admin_reloads_and_gets_the_outcome(api: ApiKit) -> None:
    """Test the guard (401 without a token, 403 for viewer and operator) and the answer."""
    assert api.request("POST", "/api/v1/reload").status == 401
    for role in ("viewer", "operator"):
        assert api.request("POST", "/api/v1/reload", token=TOKENS[role]).status == 403
    assert api.reloads == []
    answer = api.request("POST", "/api/v1/reload", token=TOKENS["admin"])
    assert (answer.status, answer.body["status"], answer.body["trigger"]) == (200, "ok", "api")
    assert api.reloads == ["api"]
