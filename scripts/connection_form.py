"""The Graph Mail connection form as the installed Airflow's UI builds it: `python scripts/connection_form.py`
prints it as one line of JSON:
{"extra": {name: {"label", "secret", "default", "section", "choices"}}, "order": [names as the form shows them],
"login": label, "password": label, "hidden": [...]}.

Airflow 3.x serves the form from its API (HookMetaService: conn-fields on 3.2+, the hook's
get_connection_form_widgets on 3.0/3.1, which it calls with wtforms stood in); Airflow 2.x renders the
hook's wtforms widgets itself.
"""

from __future__ import annotations

import json

from airflow_graph_mail.hooks.graph_mail import GraphMailHook

CONN_TYPE = GraphMailHook.conn_type


def graph_mail_form() -> dict:
    try:
        from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    except ImportError:  # Airflow 2
        return _airflow2_form()
    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == CONN_TYPE]
    extra = {}
    for name, param in (meta.extra_fields or {}).items():
        schema = param["schema"] if isinstance(param, dict) else param.schema
        value = param.get("value") if isinstance(param, dict) else getattr(param, "value", None)
        shown = schema.get("values_display") or {}
        extra[name] = {"label": schema.get("title"), "secret": schema.get("format") == "password",
                       "default": value, "section": schema.get("section"),
                       # each choice as the form's drop-down shows it (Airflow's UI writes "null" for None)
                       "choices": [shown.get("null" if c is None else str(c)) or ("null" if c is None else str(c))
                                   for c in schema.get("enum") or []]}
    standard = meta.standard_fields
    assert standard is not None and standard.login is not None and standard.password is not None, meta
    hidden = [name for name in ("host", "url_schema", "port") if getattr(getattr(standard, name), "hidden", False)]
    return {"extra": extra, "login": standard.login.title, "password": standard.password.title, "hidden": hidden,
            "placeholders": {"login": standard.login.placeholder}}


def _airflow2_form() -> dict:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    prefix = f"extra__{CONN_TYPE}__"
    extra = {key[len(prefix):]: {"label": str(widget.field.args[0]),
                                 "secret": widget.field.field_class.__name__ == "PasswordField",
                                 "default": widget.field.kwargs.get("default"), "section": None, "choices": []}
             for key, widget in manager.connection_form_widgets.items() if key.startswith(prefix)}
    behaviour = manager.field_behaviours[CONN_TYPE]
    return {"extra": extra, "login": behaviour["relabeling"]["login"], "password": behaviour["relabeling"]["password"],
            "hidden": [n if n != "schema" else "url_schema" for n in behaviour["hidden_fields"] if n != "extra"],
            "placeholders": {"login": behaviour["placeholders"]["login"]}}


MARKER = "CONNECTION-FORM "  # Airflow may log lines of its own before; the form is the line that starts so


if __name__ == "__main__":
    form = graph_mail_form()
    print(MARKER + json.dumps({**form, "order": list(form["extra"])}, sort_keys=True))
