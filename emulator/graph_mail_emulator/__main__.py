"""`graph-mail-emulator` (or `python -m graph_mail_emulator`): serve until interrupted, or export a
mailbox as .eml files."""

from __future__ import annotations

import argparse
import json
import sys

from graph_mail_emulator.backend.bounces import parse_rule
from graph_mail_emulator.backend.limits import (
    MB,
    QUEUE_FOLDERS,
    RECIPIENT_LIMIT_ANSWERS,
    RECIPIENT_RATE_STATUSES,
    Limits,
)
from graph_mail_emulator.config import DEFAULT_PORT, BounceConfig, EmulatorConfig, Network
from graph_mail_emulator.emulator import CONNECTION_FILE, GraphEmulator
from graph_mail_emulator.entra import SCOPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graph-mail-emulator", description=__doc__)
    parser.add_argument("--state-dir", help="keep mailboxes, CA and credentials here (default: in memory)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="another host name to answer to (others are refused, against DNS rebinding)")
    parser.add_argument("--microsoft-hosts", action="store_true",
                        help="also serve login.microsoftonline.com and graph.microsoft.com (point them here with "
                        "/etc/hosts or --add-host, listen on 443, trust the CA): clients keep their defaults")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"default {DEFAULT_PORT}, so that a connection added once keeps working after a "
                        "restart; 0 picks a free port")
    parser.add_argument("--sender", action="append", default=[],
                        help="another user's mailbox: it may send, and mail to it is delivered (mail to an address "
                        "of its domain that no user has bounces, as in Exchange)")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds")
    parser.add_argument("--message-size-limit-mb", type=float, default=35,
                        help="the tenant's message size limit (Exchange Online: 35, at most 150)")
    parser.add_argument("--upload-budget-mb", type=float, default=150,
                        help="upload bytes allowed per mailbox per window before 429 (Exchange: 150)")
    parser.add_argument("--upload-budget-window", type=float, default=300, help="seconds (Exchange: 300)")
    parser.add_argument("--mailbox-concurrency", type=int, default=4,
                        help="concurrent requests per mailbox before 429 (Exchange: 4)")
    parser.add_argument("--mailbox-requests", type=int, default=10_000,
                        help="requests per mailbox per 10 minutes before 429 (Exchange: 10,000)")
    parser.add_argument("--latency-ms", type=float, default=0, help="added to every mailbox request")
    parser.add_argument("--accepted-domain", action="append", default=[], metavar="DOMAIN",
                        help="another of the tenant's domains: mail to an address there that is no user bounces "
                        "with 5.1.10 (the tenant's contoso.onmicrosoft.com and its users' domains, such as the "
                        "sender's contoso.com, always are)")
    parser.add_argument("--bounce", action="append", default=[], metavar="ADDRESS=STATUS",
                        help="mail to ADDRESS (* wildcards allowed) bounces with STATUS, e.g. "
                        "full@contoso.com=5.2.2; the sender gets a non-delivery report")
    parser.add_argument("--ndr-delay", type=float, default=1.0,
                        help="seconds before a non-delivery report reaches the sender (default 1)")
    exchange = parser.add_argument_group(
        "Exchange Online's sending limits", "on by default at Exchange Online's values, as behind a real Graph")
    exchange.add_argument("--no-exchange-limits", action="store_true",
                          help="turn every limit of this group off: mail leaves at once, no window, no cap")
    exchange.add_argument("--message-rate", type=int, default=30, metavar="N",
                          help="messages a mailbox sends per minute; the rest wait in the Outbox "
                               "(Exchange: 30; 0: off)")
    exchange.add_argument("--recipient-rate", type=int, default=10_000, metavar="N",
                          help="recipients a mailbox may send to per 24-hour sliding window; beyond it mail bounces "
                          "(Exchange: 10,000; 0: off)")
    exchange.add_argument("--recipient-rate-status", default="5.1.90", choices=RECIPIENT_RATE_STATUSES,
                          help="the code of that bounce (5.1.90, or 5.2.2 in its submission-quota wording)")
    exchange.add_argument("--recipient-limit", type=int, default=500, metavar="N",
                          help="recipients per message, as an admin sets it (Exchange: 500, 1 to 1000; 0: off)")
    exchange.add_argument("--recipient-limit-answer", default="ndr", choices=RECIPIENT_LIMIT_ANSWERS,
                          help="over that limit: ndr (accepted, then a 5.5.3 report, as documented) or 400 at once")
    exchange.add_argument("--licenses", type=int, default=100, metavar="N",
                          help="the tenant's email licences: its external recipient cap (TERRL) is "
                          "500 * N^0.7 + 9500 per 24 hours (100: 22,059)")
    exchange.add_argument("--trial-tenant", action="store_true",
                          help="a trial tenant: TERRL is 5,000 and its bounces say 5.7.232")
    exchange.add_argument("--external-limit", type=int, default=None, metavar="N",
                          help="TERRL as a number of external recipients per 24 hours (0: off); overrides --licenses")
    exchange.add_argument("--queue-folder", default="outbox", choices=QUEUE_FOLDERS,
                          help="where accepted mail waits for its slot (default outbox)")
    parser.add_argument("--scope-app-to", action="append", default=[], metavar="MAILBOX",
                        help="restrict the app to this mailbox (repeatable), as Exchange RBAC for Applications "
                        "does; other mailboxes answer 403")
    parser.add_argument("--scope-kind", default="rbac", choices=SCOPES,
                        help="how --scope-app-to restricts it: rbac (roles granted in Exchange, not in the token) "
                        "or access_policy (an application access policy)")
    parser.add_argument("--export-eml", metavar="DIR", help="write every mailbox's Inbox as .eml files and exit")
    args = parser.parse_args(argv)
    for rule in args.bounce:
        try:
            parse_rule(rule)
        except ValueError as err:
            parser.error(str(err))

    try:
        settings = config(args)
    except ValueError as err:  # a limit's own words, named as the option that set it
        name, _, problem = str(err).partition(":")
        parser.error(f"--{name.replace('_', '-')}:{problem}")
    emulator = GraphEmulator(settings)
    if args.scope_app_to:
        emulator.entra.scope_app(emulator.entra.default_app, args.scope_app_to, args.scope_kind)
    if args.export_eml:
        for mailbox in emulator.backend.store.mailboxes():
            for path in emulator.inspect.export_eml(mailbox.address, f"{args.export_eml}/{mailbox.address}"):
                print(path)
        return 0
    try:
        emulator.start()
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port} ({err.strerror}); pass another --port, or --port 0 for "
              "a free one", file=sys.stderr)
        return 2
    if not emulator.config.network.is_loopback:
        print(f"WARNING: listening on {args.host}, beyond this machine: the inspection API (/_emulator/) and the "
              "mailbox viewer have no sign-in, so anyone who can reach this port can read and clear every "
              "mailbox. Use the default 127.0.0.1 unless you mean it.", file=sys.stderr, flush=True)
    connection = json.dumps(emulator.connection())
    print(f"Graph mail emulator on {emulator.base_url}", flush=True)
    print(f"CA bundle: {emulator.ca_path}")
    print(f"Mailbox viewer: {emulator.base_url}/ (trust the CA bundle in the browser, or accept its warning)")
    if emulator.state_dir:
        print(f"Airflow connection written to {emulator.state_dir / CONNECTION_FILE}")
    print(f"export AIRFLOW_CONN_GRAPH_MAIL_DEFAULT='{connection}'")
    managed = " ".join(f"{k}={v}" for k, v in emulator.entra.managed_identity_env().items())
    print(f"Managed identity (extra credential=managed_identity): export {managed}", flush=True)
    emulator.serve_until_stopped()
    return 0


def config(args: argparse.Namespace) -> EmulatorConfig:
    """The command line's options as the emulator's configuration."""
    limits = Limits(message_size_limit=int(args.message_size_limit_mb * MB),
                    upload_budget_bytes=int(args.upload_budget_mb * MB), upload_budget_window=args.upload_budget_window,
                    mailbox_concurrency=args.mailbox_concurrency, mailbox_requests=args.mailbox_requests,
                    latency=args.latency_ms / 1000, exchange_limits=not args.no_exchange_limits,
                    message_rate=args.message_rate, recipient_rate=args.recipient_rate,
                    recipient_rate_status=args.recipient_rate_status, recipient_limit=args.recipient_limit,
                    recipient_limit_answer=args.recipient_limit_answer, licenses=args.licenses,
                    trial_tenant=args.trial_tenant, external_limit=args.external_limit, queue_folder=args.queue_folder)
    return EmulatorConfig(
        args.state_dir, token_lifetime=args.token_lifetime, senders=tuple(args.sender), limits=limits,
        network=Network(args.host, args.port, tuple(args.allow_host), args.microsoft_hosts),
        bounces=BounceConfig(tuple(args.accepted_domain), tuple(args.bounce), args.ndr_delay))


if __name__ == "__main__":
    sys.exit(main())
