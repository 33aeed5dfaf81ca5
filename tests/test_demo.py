"""`make demo-serve`: the demo's report DAG against the emulator, then the emulator and its viewer stay up."""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = pytest.mark.integration  # runs the demo as a process


def test_demo_serve_keeps_the_viewer_up_until_interrupted(tmp_path):
    started = dt.date.today()
    demo = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), "--serve", "--port", "0",
                             "--state-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)
    lines = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("Serving until Ctrl-C"):
                break
        output = "".join(lines)
        viewer = re.search(r"^Mailbox viewer: (https://\S+/)$", output, re.M)
        assert viewer, output
        viewer_url = viewer.group(1)
        import requests

        page = requests.get(viewer_url, verify=str(tmp_path / "emulator" / "tls" / "ca.pem"), timeout=10)
        days = {started.isoformat(), dt.date.today().isoformat()}  # the day it runs (a run may pass midnight)
        assert page.status_code == 200 and any(f"Daily sales report for {day}" in page.text for day in days), \
            re.findall(r"Daily sales report for [0-9-]+", page.text)
        assert re.search(r"view: +https://\S+/_viewer/messages/\S+", output)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        assert "Stopped." in demo.stdout.read()
    finally:
        demo.kill()
