"""`make demo`: start the emulator, run the report DAG against it, show what each mailbox received and
where to see it in a browser. `make demo-serve` (--serve) then keeps the emulator up until Ctrl-C."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

from airflow_env import ROOT, airflow_env, dags_test, migrate
from graph_mail_emulator import EmulatorConfig, GraphEmulator, Network
from graph_mail_emulator.config import DEFAULT_PORT

STATE = ROOT / ".demo"
PORT = DEFAULT_PORT  # a stable viewer address from one run to the next; any free port when it is taken


def start_emulator(state: Path, port: int) -> GraphEmulator:
    try:
        return GraphEmulator(EmulatorConfig(state / "emulator", network=Network(port=port))).start()
    except OSError:
        if port == 0:
            raise
        print(f"Port {port} is in use; taking a free one.")
        return GraphEmulator(state / "emulator").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep the emulator and its viewer up until Ctrl-C")
    parser.add_argument("--state-dir", type=Path, default=STATE, help="mailboxes, CA and .eml exports")
    parser.add_argument("--port", type=int, default=PORT, help="0 picks a free port")
    args = parser.parse_args(argv)
    emulator = start_emulator(args.state_dir, args.port)
    try:
        status = run_demo(emulator, args.state_dir)
        print(f"\nMailbox viewer: {emulator.base_url}/")
        print(f"  (the emulator's own CA signed its certificate: trust {emulator.ca_path} in the browser, "
              "or accept the warning once)")
        if not args.serve:
            print("  The emulator stops now; `make demo-serve` runs the same demo and keeps the viewer up.")
            return status
        serve(emulator)
        return status
    finally:
        emulator.stop()


def serve(emulator: GraphEmulator) -> None:
    """Wait for Ctrl-C (or SIGTERM); meanwhile DAGs can send through this emulator and appear in the viewer."""
    print(f"\nServing until Ctrl-C. To send from your own DAGs to this emulator:\n"
          f"  export AIRFLOW_CONN_GRAPH_MAIL_DEFAULT='{json.dumps(emulator.connection())}'", flush=True)
    emulator.serve_until_stopped()
    print("Stopped.")


def run_demo(emulator: GraphEmulator, state: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        emulator.reset()
        print(f"Graph mail emulator on {emulator.base_url} (state in {emulator.state_dir})")
        home = Path(tmp) / "airflow"
        print("Preparing a temporary Airflow home ...", flush=True)
        migrate(home)
        env = airflow_env(home, emulator.connection(), REPORT_OUTPUT_DIR=str(Path(tmp) / "reports"))
        today = dt.date.today().isoformat()  # the report is dated the day the demo runs
        print(f"Running: airflow dags test report_distribution {today}", flush=True)
        result = dags_test("report_distribution", env, logical_date=today)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
            print(f"airflow dags test failed (exit {result.returncode})")
            return 1
        delivered = 0
        for mailbox in emulator.backend.store.mailboxes():
            inbox = emulator.inspect.messages(mailbox.address, "inbox", with_content=False)
            if not inbox:
                continue
            eml_dir = state / "eml" / mailbox.address
            emulator.inspect.export_eml(mailbox.address, eml_dir)
            print(f"\n{mailbox.address}: {len(inbox)} message(s) in Inbox, .eml files in {eml_dir}")
            for message in inbox:
                delivered += 1
                to = ", ".join(r["emailAddress"]["address"] for r in message.get("toRecipients", []))
                cc = ", ".join(r["emailAddress"]["address"] for r in message.get("ccRecipients", []))
                print(f"  subject: {message['subject']}")
                print(f"  from:    {message['from']['emailAddress']['address']}   to: {to}   cc: {cc}")
                for att in message["attachments"]:
                    kind = f"inline image cid:{att['contentId']}" if att["isInline"] else "attachment"
                    print(f"  {kind}: {att['name']} ({att['size']:,} bytes, {att['contentType']})")
                print(f"  view:    {emulator.base_url}/_viewer/messages/{message['id']}")
        if not delivered:
            print("Nothing arrived in any mailbox.")
            return 1
        print(f"\n{delivered} delivered copies. Sent Items of {emulator.default_sender}: "
              f"{len(emulator.inspect.messages(emulator.default_sender, 'sentitems', with_content=False))}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
