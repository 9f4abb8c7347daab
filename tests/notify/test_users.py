"""Users: parsing people and their receivers, the template view, config errors."""

from __future__ import annotations

import pytest

from tocsin.notify.users import User, parse_users
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

RECEIVERS = ("mail", "pd-alice", "ops-slack")


def parse(text: str) -> dict[str, User]:
    """Parse a config file holding a `users:` section."""
    data = load_yaml(text, name="incidents.yaml")
    return parse_users(data["users"], value_mark(data, "users", data.mark), receivers=RECEIVERS)


def test_users_by_name_with_receivers_in_order() -> None:
    """Test that users keep their receivers in order and show name, full name and email."""
    users = parse(
        "users:\n"
        "  - {name: alice, full_name: Alice A, email: a@x.example, receivers: [pd-alice, mail]}\n"
        "  - {name: bob.b}\n"
    )
    assert list(users) == ["alice", "bob.b"]
    alice = users["alice"]
    assert alice.receivers == ("pd-alice", "mail")
    assert alice.as_dict() == {"name": "alice", "full_name": "Alice A", "email": "a@x.example"}
    assert alice.where is not None
    assert alice.where.line == 2
    # Without a full name the name stands in; without receivers nobody can page them.
    assert users["bob.b"].as_dict() == {"name": "bob.b", "full_name": "bob.b", "email": ""}
    assert users["bob.b"].receivers == ()


def test_no_section_means_no_users() -> None:
    """Test that an empty `users:` gives no users."""
    assert parse("users:\n") == {}


ERRORS = [
    pytest.param(
        "users:\n  - {name: alice, receivers: [mial]}\n",
        "incidents.yaml:2:31: user 'alice': unknown receiver 'mial' (did you mean 'mail'?) "
        "(receivers are defined under 'receivers')",
        id="receiver",
    ),
    pytest.param(
        "users:\n  - {name: alice, receivers: [mail, mail]}\n",
        "incidents.yaml:2:37: user 'alice': receiver 'mail' is listed twice",
        id="receiver-twice",
    ),
    pytest.param(
        "users:\n  - {name: alice}\n  - {name: alice}\n",
        "incidents.yaml:3:12: duplicate user name 'alice' (first defined at incidents.yaml:2:12)",
        id="duplicate",
    ),
    pytest.param(
        "users:\n  - {name: alice smith}\n",
        "incidents.yaml:2:12: user 'alice smith': 'name' must be letters, digits and _.@- "
        "(starting with a letter or digit), not 'alice smith'",
        id="name",
    ),
    pytest.param(
        "users:\n  - {name: alice, email: alice}\n",
        "incidents.yaml:2:26: user 'alice': 'email' must be an address like ops@example.com, "
        "not 'alice'",
        id="email",
    ),
    pytest.param(
        "users:\n  - {name: alice, mail: a@x.example}\n",
        "incidents.yaml:2:19: user 'alice': unknown option 'mail' (did you mean 'email'?)",
        id="typo",
    ),
    pytest.param(
        "users:\n  - {full_name: Alice}\n",
        "incidents.yaml:2:5: user 1: missing required key 'name'",
        id="no-name",
    ),
    pytest.param(
        "users:\n  - {name: alice, full_name: ''}\n",
        "incidents.yaml:2:30: user 'alice': 'full_name' must not be empty (leave it out instead)",
        id="empty-full-name",
    ),
    pytest.param(
        "users:\n  - {name: alice, receivers: mail}\n",
        "incidents.yaml:2:30: user 'alice': 'receivers' must be a list, not text",
        id="receivers-list",
    ),
    pytest.param(
        "users: {alice: {}}\n",
        "incidents.yaml:1:8: 'users' must be a list, not a mapping",
        id="not-list",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each user mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message
