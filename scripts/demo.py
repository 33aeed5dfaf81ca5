"""`make demo`: start the emulator, run the report DAG against it, show what each mailbox received."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from airflow_env import ROOT, airflow_env, dags_test, migrate

from airflow_graph_mail.emulator import GraphEmulator

STATE = ROOT / ".demo"


def main() -> int:
    with GraphEmulator(STATE / "emulator") as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator.reset()
        print(f"Graph mail emulator on {emulator.base_url} (state in {emulator.state_dir})")
        home = Path(tmp) / "airflow"
        print("Preparing a temporary Airflow home ...", flush=True)
        migrate(home)
        env = airflow_env(home, emulator.connection(), REPORT_OUTPUT_DIR=str(Path(tmp) / "reports"))
        print("Running: airflow dags test report_distribution", flush=True)
        result = dags_test("report_distribution", env)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
            print(f"airflow dags test failed (exit {result.returncode})")
            return 1
        delivered = 0
        for mailbox in emulator.store.mailboxes():
            inbox = emulator.messages(mailbox.address, "inbox", with_content=False)
            if not inbox:
                continue
            eml_dir = STATE / "eml" / mailbox.address
            emulator.export_eml(mailbox.address, eml_dir)
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
        if not delivered:
            print("Nothing arrived in any mailbox.")
            return 1
        print(f"\n{delivered} delivered copies. Sent Items of {emulator.default_sender}: "
              f"{len(emulator.messages(emulator.default_sender, 'sentitems', with_content=False))}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
