"""Where the emulator answers, and Microsoft's host names it can answer as."""

from __future__ import annotations

from dataclasses import dataclass

# Microsoft's sign-in, Graph and Outlook upload hosts, served when a client is pointed here by name
# (``Network.public_hosts``); Outlook's upload URLs are on the last.
OUTLOOK_UPLOAD_HOST = "outlook.office.com"
MICROSOFT_HOSTS = ("login.microsoftonline.com", "graph.microsoft.com", OUTLOOK_UPLOAD_HOST)


@dataclass
class Site:
    """Where the emulator answers; the port is known once it listens."""

    host: str
    port: int = 0

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def upload_origin(self, host_name: str | None) -> str:
        """Outlook's upload host is not Graph's, so that a client scoping its token to the Graph host sends
        none there: outlook.office.com for a client that asked graph.microsoft.com (``host_name``, the
        request's), else the emulator's other loopback name."""
        if host_name in MICROSOFT_HOSTS:
            return f"https://{OUTLOOK_UPLOAD_HOST}"
        return f"https://{'127.0.0.1' if self.host == 'localhost' else 'localhost'}:{self.port}"
