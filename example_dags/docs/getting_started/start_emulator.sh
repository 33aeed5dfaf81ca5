#!/usr/bin/env bash
# Terminal 1: the emulator, until Ctrl-C. It prints the mailbox viewer's address, and keeps its mailboxes,
# its CA and the app's credentials in .emulator/ (the connection in .emulator/airflow-connection.json).
graph-mail-emulator --state-dir .emulator
