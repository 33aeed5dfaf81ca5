"""`make test-package`: the two distributions as their users install them.

Builds the sdists and wheels of both distributions from this checkout: the provider (airflow-graph-mail)
and the emulator (graph-mail-emulator, emulator/). Checks what they hold (licence, console script, the
pytest plugin's entry point, no test that cannot run, no emulator in the provider). Then the emulator where
Airflow is not installed at all: its wheel alone in a fresh virtualenv with msal and requests beside it,
`graph-mail-emulator` started, one mail sent with msal and requests (scripts/plain_client.py) and read back
through the inspection API. Then for each Airflow version: a fresh virtualenv, plain `pip install
apache-airflow==X <provider wheel> <emulator wheel>` (plus ``PINS`` where today's releases break that
Airflow), and with Airflow's own CLI only:
`airflow db migrate`, the emulator started from the wheel's `graph-mail-emulator` script, `airflow
connections add`, `airflow connections test` (the permissions report), the connection form as that
version's UI builds it, `airflow dags test report_distribution`, whose mail is then read back from the
emulator, and `airflow dags test failure_alerts` with `[email] email_backend` ours: the task's notifier,
the DAG's notifier and Airflow's own alert e-mail (`email_on_failure`) must all arrive, the connection
read from the metadata database.

    python scripts/check_package.py 2.11 3.0 3.1 3.2 latest
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from airflow_graph_mail.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"
CONN_TYPE = get_provider_info()["connection-types"][0]["connection-type"]
EXPECTED_FORM_SECRETS = {"certificate_private_key", "certificate_passphrase", "refresh_token"}
# Versions with which these Airflow releases' own `airflow dags test` runs a task (what a user gets from
# Airflow's constraint files; unpinned, today's releases break it): 3.0.6's task runner gets 422 from its own
# execution API with today's FastAPI; 3.2.2's fails with FastAPI 0.137+ (cadwyn 9 follows it) and with
# svcs 26 ("'State' object has no attribute 'svcs_registry'"). 3.3 caps FastAPI itself.
PINS = {"3.0": ["fastapi<0.116", "svcs<26"], "3.2": ["fastapi<0.137", "svcs<26"]}
# Airflow 3.0's own alert text names ti.log_url and ti.mark_success_url, which its task instances lack: the
# alert fails to render before any backend is called (apache/airflow#53135). Its documented way out is
# [email] html_content_template, a file of one's own; this one drops the two links.
ALERT_TEMPLATE = {"3.0": "Try {{try_number}} out of {{max_tries + 1}}<br>Exception:<br>{{exception_html}}<br>"
                         "Host: {{ti.hostname}}<br>"}
ALERTS = {"[Airflow] failure_alerts.check_freshness failed (try 1 of 1)": "the task's GraphMailNotifier",
          "[Airflow] DAG failure_alerts failed: ": "the DAG's GraphMailNotifier",
          "Airflow alert: ": "email_on_failure through [email] email_backend"}


def run(*command, env=None, cwd=None, check=True) -> str:
    result = subprocess.run([str(c) for c in command], env=env, cwd=cwd, capture_output=True, text=True,
                            check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(map(str, command))}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


def _built(source: Path, out: Path) -> tuple[Path, list[str], str, str, list[str]]:
    """Build one distribution: (wheel, its file names, METADATA, entry_points.txt, the sdist's members)."""
    run(UV, "build", "--quiet", "--out-dir", out, source)
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    with tarfile.open(sdist) as archive:
        members = [m.split("/", 1)[1] for m in archive.getnames() if "/" in m]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), f"{wheel.name} carries no LICENSE"
    assert "License-Expression: Apache-2.0" in metadata, wheel.name
    assert "LICENSE" in members, f"{sdist.name} carries no LICENSE"
    return wheel, names, metadata, entry_points, members


def build(out: Path) -> tuple[Path, Path]:
    """(the provider's wheel, the emulator's wheel), each checked for what it must and must not hold."""
    wheel, names, metadata, entry_points, members = _built(ROOT, out / "provider")
    assert "Framework :: Apache Airflow" in metadata
    assert any(n.endswith("notifications/templates/task_failure.html") for n in names)
    emulated = [n for n in names if "emulator" in n.lower() and not n.endswith(".dist-info/METADATA")]
    assert not emulated, f"the provider's wheel holds emulator files: {emulated}"
    assert "graph-mail-emulator" not in entry_points, entry_points
    assert not [m for m in members if m.startswith(("tests/", "emulator/"))], "the sdist ships tests or the emulator"
    emulator, names, metadata, entry_points, members = _built(ROOT / "emulator", out / "emulator")
    requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")
                    and "extra ==" not in line]
    assert not [r for r in requirements if "airflow" in r.lower()], requirements
    assert not [n for n in names if n.startswith("airflow_graph_mail")], "the emulator's wheel holds the provider"
    assert "graph-mail-emulator = graph_mail_emulator.__main__:main" in entry_points
    assert "[pytest11]\ngraph_mail_emulator = graph_mail_emulator.pytest_plugin" in entry_points
    assert {"graph_mail_emulator/faces/viewer/templates/index.html",
            "graph_mail_emulator/faces/viewer/static/viewer.js"} <= set(names), "the viewer's files are missing"
    assert "tests/conftest.py" in members
    print(f"built {wheel.name} (no emulator in it, no console script) and {emulator.name} (no Airflow in its "
          f"requirements: {', '.join(r.split(':', 1)[1].strip() for r in requirements)}; console script, "
          "pytest plugin, the viewer's files), and their sdists: LICENSE in all four, the provider's without tests")
    return wheel, emulator


def check_without_airflow(emulator_wheel: Path, work: Path) -> None:
    """The emulator's wheel alone with msal and requests: no Airflow anywhere, the command serves, a plain
    client signs in and sends, and the mail is read back through the inspection API."""
    started = time.monotonic()
    venv = work / "no-airflow"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", emulator_wheel, "msal", "requests")
    for absent in ("airflow", "airflow_graph_mail"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {absent}"], capture_output=True,
                               text=True, check=False, cwd=work)  # not this checkout's directory
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"{absent} is importable"
    emulator, connection = start_emulator(venv, work / "emulator-no-airflow")
    try:
        sent = run(venv / "bin" / "python", ROOT / "scripts" / "plain_client.py", work / "emulator-no-airflow",
                   cwd=work)
        assert "sendMail 202" in sent, sent
        (mail,) = inbox(connection, "ann@example.com")
        assert mail["subject"] == "Sent without Airflow", mail
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    print(f"no Airflow: the emulator's wheel with msal and requests only (airflow and airflow_graph_mail not "
          f"importable), graph-mail-emulator served, msal signed in, requests sent one mail, read back through "
          f"/_emulator/ ({time.monotonic() - started:.0f} s)")


def airflow_requirement(version: str) -> list[str]:
    """Airflow 3.0's UI builds any provider's connection form only with the FAB provider installed (as
    Airflow's image has it); 3.1+ stands wtforms in itself, and 2.x carries it. Plus ``PINS``."""
    if version == "latest":
        return ["apache-airflow"]
    airflow = f"apache-airflow[fab]=={version}.*" if version == "3.0" else f"apache-airflow=={version}.*"
    return [airflow, *PINS.get(version, [])]


def start_emulator(venv: Path, state: Path) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([str(venv / "bin" / "graph-mail-emulator"), "--port", "0", "--state-dir", str(state)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    connection_file = state / "airflow-connection.json"
    for _ in range(300):
        if connection_file.exists() and connection_file.stat().st_size:
            return process, json.loads(connection_file.read_text())
        if process.poll() is not None:
            raise SystemExit(f"the emulator stopped: {process.stdout.read()}")
        time.sleep(0.1)
    raise SystemExit("the emulator did not start within 30 s")


def inbox(connection: dict, address: str) -> list[dict]:
    extra = connection["extra"]
    context = ssl.create_default_context(cafile=extra["ca_bundle"])
    url = f"{extra['graph_url']}/_emulator/mailboxes/{address}/inbox"
    with urllib.request.urlopen(url, context=context, timeout=30) as answer:
        return json.load(answer)["value"]


def check_airflow(version: str, wheel: Path, emulator_wheel: Path, work: Path) -> None:
    started = time.monotonic()
    venv = work / f"airflow-{version}"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", *airflow_requirement(version), wheel,
        emulator_wheel)
    installed = run(venv / "bin" / "python", "-c", "import airflow; print('VERSION', airflow.__version__)")
    installed = installed.split("VERSION ", 1)[1].split()[0]
    home = work / f"home-{version}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"), AIRFLOW__CORE__TEST_CONNECTION="Enabled",
               REPORT_OUTPUT_DIR=str(work / f"reports-{version}"), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    airflow = venv / "bin" / "airflow"
    run(airflow, "db", "migrate", env=env)
    emulator, connection = start_emulator(venv, work / f"emulator-{version}")
    try:
        connection = {**connection, "conn_type": CONN_TYPE}
        added = run(airflow, "connections", "add", "graph_mail_default", "--conn-json", json.dumps(connection),
                    env=env)
        tested = run(airflow, "connections", "test", "--verbose", "graph_mail_default", env=env)
        assert "Connection success!" in tested and "Signed in with client secret" in tested, tested[-2000:]
        form = json.loads(_form(venv, env, work))
        secrets = {name for name, field in form["extra"].items() if field["secret"]}
        assert len(form["extra"]) >= 20 and secrets == EXPECTED_FORM_SECRETS, form
        assert (form["login"], form["password"]) == ("Client ID", "Client secret"), form
        reported = run(airflow, "dags", "test", "report_distribution", "2026-11-20", env=env)
        (mail,) = inbox(connection, "bob@example.com")
        assert mail["subject"] == "Daily sales report for 2026-11-20", mail["subject"]
        assert {a["name"] for a in mail["attachments"]} == {"sales_2026-11-20.csv", "revenue_2026-11-20.png"}
        if version in ALERT_TEMPLATE:
            template = work / f"alert-{version}.html"
            template.write_text(ALERT_TEMPLATE[version])
            env["AIRFLOW__EMAIL__HTML_CONTENT_TEMPLATE"] = str(template)
        alerted = check_alerts(airflow, env, connection)
        assert "shall not contain" not in added + tested + reported + alerted, "Airflow warns about the type"
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    print(f"Airflow {installed}: pip install{' with ' + ', '.join(PINS[version]) if version in PINS else ''}, "
          f"connections add/test (permissions report), the form's {len(form['extra'])} fields, dags test "
          f"report_distribution delivered, failure_alerts' three alerts arrived"
          f"{' (with [email] html_content_template)' if version in ALERT_TEMPLATE else ''} "
          f"({time.monotonic() - started:.0f} s)")


def check_alerts(airflow: Path, env: dict, connection: dict) -> str:
    """`airflow dags test failure_alerts` with our [email] backend and no email_conn_id (so
    graph_mail_default, from the metadata database): every alert the example asks for arrives."""
    env = {**env, "AIRFLOW__EMAIL__EMAIL_BACKEND": "airflow_graph_mail.email_backend.send_email"}
    output = run(airflow, "dags", "test", "failure_alerts", "2026-11-20", env=env, check=False)
    assert "sales table is 26 hours old" in output, output[-3000:]
    subjects = [mail["subject"] for mail in inbox(connection, "oncall@example.com")]
    for start, what in ALERTS.items():
        assert [s for s in subjects if s.startswith(start)], f"no alert from {what}: {subjects}\n{output[-3000:]}"
    assert len(subjects) == len(ALERTS), subjects
    return output


def _form(venv: Path, env: dict, work: Path) -> str:
    """The form as the version's UI builds it, printed as JSON by scripts/connection_form.py."""
    output = subprocess.run([str(venv / "bin" / "python"), str(ROOT / "scripts" / "connection_form.py")],
                            env=env, cwd=work, capture_output=True, text=True, check=True).stdout
    (line,) = [line for line in output.splitlines() if line.startswith("CONNECTION-FORM ")]
    return line.split(" ", 1)[1]


def main(versions: list[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="graph-mail-package-"))
    try:
        wheel, emulator_wheel = build(work / "dist")
        check_without_airflow(emulator_wheel, work)
        for version in versions:
            check_airflow(version, wheel, emulator_wheel, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["2.11", "3.0", "3.1", "3.2", "latest"]))
