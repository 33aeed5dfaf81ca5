"""OData ``$filter`` on messages, in the forms Graph supports there: comparisons (eq ne gt ge lt le) on the
message's properties and their parts (``from/emailAddress/address``, ``flag/flagStatus``), dates and
booleans, ``and``/``or``/``not`` and parentheses, ``contains``/``startswith``/``endswith``, and lambdas
over collections (``toRecipients/any(r: r/emailAddress/address eq '...')``, ``categories/any(c: c eq
'...')``, ``singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')``).

A parsed filter is a predicate over a message as ``resource.full`` gives it. Strings compare without
regard to case, as Exchange compares them. Nesting (parentheses, ``not``, lambdas) is bounded, as OData's
parser bounds it, so that no filter can exhaust the stack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from graph_mail_emulator.errors import bad_request

Predicate = Callable[[dict], bool]

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)
  | (?P<punct>[(),:])
)""", re.VERBOSE)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
# How deep parentheses, "not" and lambdas may nest: far beyond any real filter, far below Python's stack.
MAX_NESTING = 100
_FUNCTIONS = {"contains", "startswith", "endswith"}
# What a lambda's collection holds: its elements' properties, or plain strings (None).
COLLECTIONS = {"torecipients": "recipient", "ccrecipients": "recipient", "bccrecipients": "recipient",
               "replyto": "recipient", "categories": None, "singlevalueextendedproperties": "property",
               "internetmessageheaders": "header"}
_ELEMENT_PATHS = {"recipient": {"emailaddress/address", "emailaddress/name"}, "property": {"id", "value"},
                  "header": {"name", "value"}}
MESSAGE_PATHS = {
    "id", "createddatetime", "lastmodifieddatetime", "changekey", "receiveddatetime", "sentdatetime",
    "hasattachments", "internetmessageid", "subject", "bodypreview", "importance", "parentfolderid",
    "conversationid", "isdeliveryreceiptrequested", "isreadreceiptrequested", "isread", "isdraft",
    "inferenceclassification", "from/emailaddress/address", "from/emailaddress/name",
    "sender/emailaddress/address", "sender/emailaddress/name", "flag/flagstatus", "body/contenttype",
}


def invalid(detail: str):
    return bad_request("BadRequest", f"Invalid filter clause: {detail}")


def too_deep():
    return bad_request("BadRequest", "Recursion depth exceeded allowed limit.")


def unknown_property(name: str, type_name: str = "message"):
    return bad_request("BadRequest", f"Could not find a property named '{name}' on type "
                       f"'microsoft.graph.{type_name}'.")


@dataclass
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        found = _TOKEN.match(text, position)
        if not found or found.end() == position:
            raise invalid(f"syntax error at position {position} in '{text}'.")
        kind = found.lastgroup or "punct"
        tokens.append(Token(kind, found.group(kind)))
        position = found.end()
    return tokens


class FilterParser:
    """Recursive descent over the tokens; ``properties`` records the message properties the filter names,
    in order (Graph's rule for ``$orderby`` with ``$filter`` needs them)."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.position = 0
        self.properties: list[str] = []
        self.variables: dict[str, str | None] = {}  # lambda variable -> element kind
        self.depth = 0

    def parse(self) -> Predicate:
        if not self.tokens:
            raise invalid("the filter is empty.")
        predicate = self._or()
        if self.position != len(self.tokens):
            raise invalid(f"unexpected '{self.tokens[self.position].text}'.")
        return predicate

    # -- grammar -------------------------------------------------------------------------------------

    def _peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, text: str | None = None, what: str = "a value") -> Token:
        token = self._peek()
        if token is None or (text is not None and token.text.lower() != text):
            wanted = f"'{text}'" if text is not None else what
            raise invalid(f"expected {wanted}" + (f", found '{token.text}'." if token else " at the end."))
        self.position += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token.kind == "name" and token.text.lower() == word:
            self.position += 1
            return True
        return False

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else _any_of(tuple(parts))

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._keyword("and"):
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else _all_of(tuple(parts))

    @contextlib.contextmanager
    def _nested(self) -> Iterator[None]:
        """One level deeper (a parenthesis, a "not", a lambda); past MAX_NESTING the filter is refused."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise too_deep()
        try:
            yield
        finally:
            self.depth -= 1

    def _unary(self) -> Predicate:
        if self._keyword("not"):
            with self._nested():
                inner = self._unary()
            return lambda m: not inner(m)
        token = self._peek()
        if token is not None and token.text == "(":
            self._take("(")
            with self._nested():
                inner = self._or()
            self._take(")")
            return inner
        return self._primary()

    def _primary(self) -> Predicate:
        token = self._take()
        if token.kind != "name":
            raise invalid(f"expected a property or a function, found '{token.text}'.")
        if token.text.lower() in _FUNCTIONS and (self._peek() or Token("", "")).text == "(":
            return self._function(token.text.lower())
        lambda_kind = self._lambda_head(token.text)
        if lambda_kind is not None:
            return self._lambda(*lambda_kind)
        getter = self._path(token.text)
        operator = self._take(what="a comparison operator").text.lower()
        if operator not in _COMPARE:
            raise invalid(f"'{operator}' is not a comparison operator (eq, ne, gt, ge, lt, le).")
        literal = self._literal()
        rule = self._comparison_rule(token.text)
        if rule == "property id":  # "String {GUID} Name x": any case and spacing
            literal = _property_id(literal)
            return lambda m: _compare(_property_id(getter(m)), operator, literal, exact=True)
        exact = rule == "property value"  # a stored key is matched as written
        return lambda m: _compare(getter(m), operator, literal, exact=exact)

    def _comparison_rule(self, path: str) -> str | None:
        first, _, rest = path.partition("/")
        if self.variables.get(first.lower()) == "property":
            return f"property {rest.lower()}"
        return None

    def _function(self, name: str) -> Predicate:
        self._take("(")
        getter = self._path(self._take().text)
        self._take(",")
        needle = self._literal()
        self._take(")")
        if not isinstance(needle, str):
            raise invalid(f"{name} takes a string.")
        needle = needle.casefold()
        test = {"contains": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}[name]

        def predicate(message: dict) -> bool:
            value = getter(message)
            return isinstance(value, str) and test(value.casefold(), needle)

        return predicate

    def _lambda_head(self, text: str) -> tuple[str, str] | None:
        """``toRecipients/any`` -> (collection, "any"|"all") when the next token opens the lambda."""
        head, _, operator = text.rpartition("/")
        if operator.lower() not in ("any", "all") or (self._peek() or Token("", "")).text != "(":
            return None
        if head.lower() not in COLLECTIONS:
            raise unknown_property(head)
        return head, operator.lower()

    def _lambda(self, collection: str, operator: str) -> Predicate:
        self._take("(")
        token = self._take(what="a range variable")
        if token.kind != "name" or "/" in token.text:
            raise invalid(f"expected a range variable, found '{token.text}'.")
        variable = token.text.lower()
        if variable in self.variables:
            raise bad_request("BadRequest", f"The range variable '{token.text}' has already been declared.")
        self._take(":")
        self.properties.append(collection.lower())
        self.variables[variable] = COLLECTIONS[collection.lower()]
        with self._nested():
            inner = self._or()
        del self.variables[variable]
        self._take(")")
        key = collection.lower()
        quantifier = any if operator == "any" else all

        def test(message: dict) -> bool:
            items = next((v for k, v in message.items() if k.lower() == key), None) or []
            return quantifier(inner({"__element__": item}) for item in items)

        return test

    def _path(self, text: str) -> Callable[[dict], object]:
        """A getter for a property path: the message's, or a lambda variable's element's."""
        first, _, rest = text.partition("/")
        if first.lower() in self.variables:
            kind = self.variables[first.lower()]
            allowed = _ELEMENT_PATHS.get(kind or "", set())
            if (kind is None and rest) or (kind is not None and rest.lower() not in allowed):
                raise unknown_property(rest or first, kind or "string")
            parts = rest.split("/") if rest else []
            return lambda m: _walk(m["__element__"], parts)
        if text.lower() not in MESSAGE_PATHS:
            raise unknown_property(text)
        self.properties.append(text.lower())
        parts = text.split("/")
        return lambda m: _walk(m, parts)

    def _literal(self):
        token = self._take()
        if token.kind == "string":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "date":
            try:
                return _as_datetime(token.text)
            except ValueError:  # a month 13, a February 30th, an hour 25
                raise bad_request("BadRequest", f"The DateTimeOffset text '{token.text}' should be in format "
                                  "'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid "
                                  "range.") from None
        if token.kind == "number":
            return float(token.text)
        if token.kind == "name" and token.text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text.lower()]
        raise invalid(f"expected a value, found '{token.text}'.")


def _any_of(parts: tuple[Predicate, ...]) -> Predicate:
    return lambda message: any(part(message) for part in parts)


def _all_of(parts: tuple[Predicate, ...]) -> Predicate:
    return lambda message: all(part(message) for part in parts)


def _walk(value, parts: list[str]):
    for part in parts:
        if not isinstance(value, dict):
            return None
        value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
    return value


def _as_datetime(text: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


def _property_id(value):
    return " ".join(value.split()).casefold() if isinstance(value, str) else value


def _compare(actual, operator: str, expected, exact: bool = False) -> bool:
    if isinstance(expected, dt.datetime):
        try:
            actual = _as_datetime(str(actual)) if actual else None
        except ValueError:
            return False
    elif isinstance(expected, str) and isinstance(actual, str) and not exact:
        actual, expected = actual.casefold(), expected.casefold()
    if operator in ("eq", "ne"):
        return (actual == expected) == (operator == "eq")
    if actual is None or expected is None:
        return False
    try:
        return {"gt": actual > expected, "ge": actual >= expected, "lt": actual < expected,
                "le": actual <= expected}[operator]
    except TypeError:
        return False


_PROPERTY_FILTER = re.compile(
    r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'((?:[^']|'')*)'"
    r"\s+and\s+\1/value\s+eq\s+'((?:[^']|'')*)'\s*\)\s*$", re.IGNORECASE)


def extended_property_lookup(expression: str) -> tuple[str, str] | None:
    """The one form the store answers from its index (a client finding its own mail by a key):
    (property id, value), or None for any other filter."""
    found = _PROPERTY_FILTER.match(expression)
    if not found:
        return None
    return found.group(2).replace("''", "'"), found.group(3).replace("''", "'")
