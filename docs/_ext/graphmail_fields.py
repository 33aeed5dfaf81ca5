"""``{graphmail-fields} GROUP``: a table of the graphmail connection's fields, read at build time from
``airflow_graph_mail.get_provider_info`` (labels, descriptions, choices, defaults, placeholders), so the
page cannot drift from the form. ``{graphmail-clouds}``: the national clouds ``extra.cloud`` names, from
``airflow_graph_mail.graph.clouds``.

Which fields belong to which credential is said once, here (``GROUPS``). The build fails (a warning, and
warnings are errors) when the form has a field no group shows, or a group names a field the form lacks.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from airflow_graph_mail.get_provider_info import EXTRAS, PLACEHOLDERS, RELABELING

log = logging.getLogger(__name__)

# The two standard fields the form keeps, relabelled; every other field is an extra.
STANDARD = ("login", "password")
GROUPS = {
    "where": ("credential", "tenant_id", "cloud", "graph_url", "authority_url", "api_version", "scopes"),
    "network": ("ca_bundle", "tls_verify", "proxies", "timeout"),
    "sending": ("sender", "allowed_recipient_domains", "max_message_size_mb", "retry_max_wait", "retry_backoff",
                "delivery_guarantee"),
    "limits": ("recipient_limit", "daily_recipient_limit", "message_rate_limit"),
    "secret": ("login", "password"),
    "certificate": ("login", "certificate_path", "certificate_private_key", "certificate_passphrase",
                    "certificate_thumbprint", "certificate_send_x5c"),
    "workload_identity": ("login", "federated_token_file"),
    "managed_identity": ("login",),
    "refresh_token": ("login", "refresh_token", "token_cache_path", "password"),
}


def problems() -> list[str]:
    """What the groups and the form disagree on (empty when they agree)."""
    known = set(EXTRAS) | set(STANDARD)
    shown = {name for names in GROUPS.values() for name in names}
    found = [f"the connection form's field {name!r} is in no group of docs/_ext/graphmail_fields.py; add it"
             for name in sorted(known - shown)]
    found += [f"docs/_ext/graphmail_fields.py shows {name!r}, which the connection form does not have"
              for name in sorted(shown - known)]
    return found


def _row(name: str) -> list[list[list[nodes.Node]]]:
    """Three cells (field and key; what it is; choices, default, example), each a list of lines."""
    if name in STANDARD:
        label, description, choices, default, secret = RELABELING[name], PLACEHOLDERS[name], None, None, \
            name == "password"
    else:
        extra = EXTRAS[name]
        label, description, choices, default, secret = (extra.label, extra.description, extra.enum, extra.default,
                                                        extra.secret)
    values: list[list[nodes.Node]] = []
    if choices:
        values.append([nodes.Text("one of ")] + [node for choice in choices
                                                  for node in (nodes.literal(text=choice), nodes.Text(" "))])
    if default is not None:
        values.append([nodes.Text("default "), nodes.literal(text=default)])
    if PLACEHOLDERS.get(name) and not secret and name not in STANDARD:  # a standard field's is its description
        values.append([nodes.Text("e.g. "), nodes.literal(text=PLACEHOLDERS[name])])
    if secret:
        values.append([nodes.Text("masked in the form and in logs")])
    key = name if name in STANDARD else f"extra.{name}"
    return [[[nodes.strong(text=label)], [nodes.literal(text=key)]], [[nodes.Text(description)]], values]


def _table(headers, widths, rows) -> nodes.table:
    table = nodes.table(classes=["graphmail-fields"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head += _table_row([[[nodes.Text(h)]] for h in headers])
    body = nodes.tbody()
    group += body
    for cells in rows:
        body += _table_row(cells)
    return table


def _table_row(cells) -> nodes.row:
    """``cells``: each a list of lines, each line a list of inline nodes (a paragraph)."""
    row = nodes.row()
    for lines in cells:
        entry = nodes.entry()
        for line in lines:
            paragraph = nodes.paragraph()
            paragraph += line
            entry += paragraph
        row += entry
    return row


def _fields_table(names) -> nodes.table:
    return _table(("Field", "What it is", "Values"), (28, 42, 30), [_row(name) for name in names])


def _clouds_table() -> nodes.table:
    from airflow_graph_mail.graph.clouds import CLOUDS

    return _table(("extra.cloud", "Graph", "Sign-in (authority)"), (16, 42, 42),
                  [[[[nodes.literal(text=name)]], [[nodes.literal(text=cloud.graph_url)]],
                    [[nodes.literal(text=cloud.authority_url)]]] for name, cloud in CLOUDS.items()])


class GraphMailFields(SphinxDirective):
    """``{graphmail-fields} certificate`` -> the fields that group uses, as the form defines them."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        group = self.arguments[0]
        if group not in GROUPS:
            log.warning("graphmail-fields: unknown group %r; use one of %s", group, ", ".join(GROUPS),
                        location=self.get_location())
            return []
        return [_fields_table(GROUPS[group])]


class GraphMailClouds(SphinxDirective):
    """``{graphmail-clouds}`` -> the national clouds the connection knows, with their hosts and scope."""

    def run(self) -> list[nodes.Node]:
        return [_clouds_table()]


def check_groups(app) -> None:
    for problem in problems():
        log.warning(problem)


def setup(app):
    app.add_directive("graphmail-fields", GraphMailFields)
    app.add_directive("graphmail-clouds", GraphMailClouds)
    app.connect("builder-inited", check_groups)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
