"""The CLI's shared output: tables and lines show control characters, never obey them."""

from __future__ import annotations

from tocsin import console


def test_table_cells_show_control_characters_and_keep_columns_aligned() -> None:
    """Test that an incident title from event data cannot colour, move or split the table."""
    text = console.table(
        ["ID", "TITLE"], [["1", "disk \x1b[31mfull\x1b[0m"], ["22", "two\nlines\r\x07"]]
    )
    assert text.splitlines() == [
        "ID  TITLE",
        "1   disk \\x1b[31mfull\\x1b[0m",
        "22  two\\x0alines\\x0d\\x07",
    ]


def test_a_block_keeps_newlines_and_tabs_only() -> None:
    """Test output blocks (command output): lines and tabs stay, other controls are shown."""
    assert console.block("a\tb\nc\x1b[2J\x9b") == "a\tb\nc\\x1b[2J\\x9b"


def test_change_and_when_read_api_values() -> None:
    """Test a timeline move and an API time as a table shows them."""
    assert console.change({"from": "new", "to": "acknowledged"}) == "new -> acknowledged"
    assert console.change({"from": None, "to": "new"}) == "new"
    assert console.when("2026-11-25T01:00:00+01:00") == "2026-11-25 00:00:00Z"
    assert console.when(None) == "-"
