from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.recipients import Recipient, check_recipient_count, parse_recipients


def test_string_with_commas_and_semicolons():
    parsed = parse_recipients("Ann Analyst <ann@example.com>; bob@example.com, carol@example.org")
    assert parsed == [Recipient("ann@example.com", "Ann Analyst"), Recipient("bob@example.com"),
                      Recipient("carol@example.org")]


def test_quoted_display_name_keeps_its_comma_and_semicolon():
    parsed = parse_recipients('"Doe, Jane; CFO" <jane@example.com>, x@example.com')
    assert parsed[0] == Recipient("jane@example.com", "Doe, Jane; CFO")
    assert parsed[1].address == "x@example.com"


def test_list_of_strings_and_graph_dicts():
    parsed = parse_recipients(["a@example.com", {"emailAddress": {"address": "b@example.com", "name": "B"}}])
    assert parsed == [Recipient("a@example.com"), Recipient("b@example.com", "B")]


def test_an_address_given_twice_is_refused_case_insensitively():
    with pytest.raises(MessageValidationError, match="cc: 'A@EXAMPLE.com' is listed twice; remove one"):
        parse_recipients(["a@example.com", "A@EXAMPLE.com"], field="cc")


def test_none_and_empty_give_no_recipients():
    assert parse_recipients(None) == []
    assert parse_recipients("") == []
    assert parse_recipients([]) == []
    assert parse_recipients("a@example.com; ") == [Recipient("a@example.com")]  # a trailing separator is fine


def test_an_empty_entry_in_a_list_is_refused():
    with pytest.raises(MessageValidationError, match=r"bcc\[1\]: empty address"):
        parse_recipients(["a@example.com", " "], field="bcc")


@pytest.mark.parametrize("bad", ["not-an-address", "a@b", "ann@", "@example.com", "a b@example.com",
                                 "ann@exa mple.com", "ann@-example.com"])
def test_malformed_address_names_field_and_value(bad):
    with pytest.raises(MessageValidationError) as err:
        parse_recipients(["ok@example.com", bad], field="cc")
    assert err.value.field == "cc"
    assert "not a valid e-mail address" in str(err.value)


def test_line_break_refused():
    with pytest.raises(MessageValidationError, match="line break"):
        parse_recipients("a@example.com\r\nBcc: evil@example.com")


def test_non_string_entry_refused():
    with pytest.raises(MessageValidationError, match="expected an e-mail address string"):
        parse_recipients([42])


def test_idn_domain_accepted():
    assert parse_recipients("user@bücher.example")[0].address == "user@bücher.example"


def test_more_than_500_recipients_refused():
    many = parse_recipients([f"u{i}@example.com" for i in range(400)])
    more = parse_recipients([f"c{i}@example.com" for i in range(101)])
    with pytest.raises(MessageValidationError, match="501 recipients"):
        check_recipient_count(many, more)
    check_recipient_count(many, more[:100])


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=20).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
_name = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\<>'),
                max_size=20).map(str.strip)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.tuples(_name, _local), min_size=1, max_size=5, unique_by=lambda entry: entry[1]))
def test_formatted_list_parses_back_to_the_same_addresses(entries):
    text = "; ".join(f'"{name}" <{local}@example.com>' if name else f"{local}@example.com"
                     for name, local in entries)
    parsed = parse_recipients(text)
    expected = [f"{local}@example.com" for _, local in entries]
    assert [r.address for r in parsed] == expected
