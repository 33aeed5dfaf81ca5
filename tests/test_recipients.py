from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_graph_mail import MessageValidationError
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
    with pytest.raises(MessageValidationError, match=r"cc: 'A@EXAMPLE\.com' is listed twice; remove one"):
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
    with pytest.raises(MessageValidationError, match="501 recipients; the mailbox accepts at most 500"):
        check_recipient_count(many, more, limit=500)
    check_recipient_count(many, more[:100], limit=500)
    check_recipient_count(many, more)  # a message may have up to 1000: an admin's raised limit
    with pytest.raises(MessageValidationError, match="1001 recipients; Exchange Online accepts at most 1000"):
        check_recipient_count(many, more, parse_recipients([f"d{i}@example.com" for i in range(500)]))


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


# -- mail merge: a row's values fill the template's slots, never its structure ----------------------------

# Fragments an attacker would put in a row: address punctuation, quotes, escapes, whole addresses.
_hostile = st.lists(st.one_of(
    st.sampled_from(['"', "\\", "<", ">", ",", ";", ":", "(", ")", "[", "]", "@", ".", " ", "eve@evil.example",
                     "<eve@evil.example>", ">, <eve@evil.example", '", eve@evil.example, "', "Bcc: eve@evil.example",
                     "dora@example.com"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=5)), max_size=6).map("".join)
_row_email = st.one_of(_local.map(lambda local: f"{local}@example.com"), _hostile)

# (to, cc) as DAG authors write them, and the recipients each gives: the row columns filling each one (a
# recipient whose columns are all blank is left out, as an empty cc column means no cc; () is a literal).
_TEMPLATES = [
    (("{{ row.email }}", ""), [("email",)], []),
    (("{{ row.name }} <{{ row.email }}>", ""), [("name", "email")], []),
    (('"{{ row.name }}" <{{ row.email }}>', "boss@contoso.com"), [("name", "email")], [()]),
    (("{{ row.name }} <{{ row.email }}>, ops@contoso.com", "{{ row.email2 }}"), [("name", "email"), ()],
     [("email2",)]),
    ((["{{ row.email }}", "ops@contoso.com"], ["{{ row.name }} <{{ row.email2 }}>"]), [("email",), ()],
     [("name", "email2")]),
]
_LITERALS = {"boss@contoso.com", "ops@contoso.com"}


def _row_messages(rows, to, cc=""):
    from airflow.providers.common.compat.sdk import DAG

    from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator, RowMessages

    with DAG("merge_slots", schedule=None) as dag:
        merge = GraphMailMergeOperator(task_id="merge", rows=rows, to=to, cc=cc, subject="Statement", body="x")
    return RowMessages(merge, rows, merge._compile(dag.get_template_env()), {}, None)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({"name": _hostile, "email": _row_email, "email2": _row_email}),
                     min_size=1, max_size=3),
       template=st.sampled_from(_TEMPLATES))
def test_a_merge_row_never_adds_a_recipient(rows, template):
    """Whatever a row holds, its mail goes to as many recipients as the template's text says, each one
    literally the row's email value or an address written in the template."""
    (to, cc), to_slots, cc_slots = template
    messages = _row_messages(rows, to, cc)
    for position, row in enumerate(rows):
        try:
            message = messages[position]
        except MessageValidationError as err:
            assert err.field.split("[")[0] in ("to", "cc"), err
            continue
        expected = [sum(1 for columns in slots if not columns or any(row[c].strip() for c in columns))
                    for slots in (to_slots, cc_slots)]
        assert [len(message.to), len(message.cc)] == expected
        values = {row["email"].strip(), row["email2"].strip()}
        assert {r.address for r in [*message.to, *message.cc]} <= values | _LITERALS
        names = {r.name for r in [*message.to, *message.cc]} - {""}
        assert names <= {row["name"].strip()}  # a name is the row's name, whole


@pytest.mark.parametrize("name", ["Dora <eve@evil.example>, Dora", 'Dora "\\" <eve@evil.example>', "Smith; Ann",
                                  'x", <eve@evil.example', "Müller, Jürgen (CFO)"])
def test_a_hostile_display_name_is_one_recipient_in_json_and_mime(name):
    from email import message_from_bytes
    from email.policy import default

    from airflow_graph_mail.mail.routing import mime_recipients

    message = _row_messages([{"name": name, "email": "dora@example.com"}], "{{ row.name }} <{{ row.email }}>")[0]
    assert message.to == [Recipient("dora@example.com", name)]
    assert message.to_graph()["toRecipients"] == [{"emailAddress": {"address": "dora@example.com", "name": name}}]
    raw = message.to_mime()
    assert [(a.display_name, a.addr_spec) for a in message_from_bytes(raw, policy=default)["To"].addresses] == [
        (name, "dora@example.com")]
    assert [(h, r.address) for h, r in mime_recipients(raw)] == [("To", "dora@example.com")]


def test_a_list_value_gives_one_recipient_per_entry_and_empty_values_none():
    rows = [{"emails": ["ann@example.com", " bob@example.com "], "cc": "", "none": []}]
    message = _row_messages(rows, "{{ row.emails }}, {{ row.none }}", "{{ row.cc }}")[0]
    assert message.to == [Recipient("ann@example.com"), Recipient("bob@example.com")]
    assert message.cc == []


def test_a_constant_in_a_recipient_template_is_rendered_per_row_after_an_earlier_merge():
    """Jinja computes a constant ``{{ ... }}`` while compiling, through the environment's finalize; a slot's
    number is only known while a row renders, so after an earlier merge in this thread it must not be fixed."""
    first = _row_messages([{"name": "Ann", "email": "ann@example.com"}], "{{ row.name }} <{{ row.email }}>")
    assert first[0].to == [Recipient("ann@example.com", "Ann")]
    messages = _row_messages([{"name": "Dora", "email": "dora@example.com"}],
                             "{{ row.name }} <{{ row.email }}>, Audit <{{ 'audit@example.com' }}>")
    assert messages[0].to == [Recipient("dora@example.com", "Dora"), Recipient("audit@example.com", "Audit")]


def test_a_recipient_value_is_one_slot_even_in_a_native_dag():
    """With render_template_as_native_obj a value is still one address: never a string read as a list."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator, RowMessages

    rows = [{"email": "['ann@example.com', 'eve@evil.example']"}]
    with DAG("merge_native", schedule=None, render_template_as_native_obj=True) as dag:
        merge = GraphMailMergeOperator(task_id="merge", rows=rows, to="{{ row.email }}", subject="{{ 6 * 7 }}",
                                       cc="boss@example.com", importance="high")
    messages = RowMessages(merge, rows, merge._compile(dag.get_template_env()), {}, None)
    with pytest.raises(MessageValidationError, match=r"to: \"\['ann@example.com', 'eve@evil.example'\]\" is not"):
        messages[0]
    rows[0]["email"] = "ann@example.com"
    assert messages[0].subject == "42"
    assert (messages[0].cc, messages[0].importance) == ([Recipient("boss@example.com")], "high")  # no template in them
