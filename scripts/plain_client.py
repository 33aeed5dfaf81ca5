"""One mail through the emulator with msal and requests only, as a user of another stack does it:
`python scripts/plain_client.py STATE_DIR` signs in with the emulator's app (client credentials), sends one
mail to ann@example.com and prints the Graph status. `make test-package` runs it where Airflow is not installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msal
import requests


def main(state_dir: str) -> int:
    # The emulator writes its app's credentials and CA there in the shape of an Airflow connection.
    connection = json.loads((Path(state_dir) / "airflow-connection.json").read_text())
    extra = connection["extra"]
    session = requests.Session()
    session.verify, session.trust_env = extra["ca_bundle"], False  # the emulator's CA, whatever the environment says
    app = msal.ConfidentialClientApplication(connection["login"], client_credential=connection["password"],
                                             authority=f"{extra['authority_url']}/{extra['tenant_id']}",
                                             instance_discovery=False, http_client=session)
    token = app.acquire_token_for_client(scopes=[f"{extra['graph_url']}/.default"])
    if "access_token" not in token:
        print(f"no token: {token.get('error_description')}")
        return 1
    message = {"subject": "Sent without Airflow", "body": {"contentType": "text", "content": "msal and requests"},
               "toRecipients": [{"emailAddress": {"address": "ann@example.com"}}]}
    answer = session.post(f"{extra['graph_url']}/v1.0/users/{extra['sender']}/sendMail", json={"message": message},
                          headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=30)
    print(f"sendMail {answer.status_code}")
    return 0 if answer.status_code == 202 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
