"""National clouds: each has its own Graph host and Entra authority; tokens do not cross them."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_graph_mail.errors import GraphConfigError


@dataclass(frozen=True)
class Cloud:
    name: str
    graph_url: str
    authority_url: str


CLOUDS = {
    "global": Cloud("global", "https://graph.microsoft.com", "https://login.microsoftonline.com"),
    "usgov": Cloud("usgov", "https://graph.microsoft.us", "https://login.microsoftonline.us"),
    "usgov-dod": Cloud("usgov-dod", "https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
    "china": Cloud("china", "https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
}


def get_cloud(name: str | None) -> Cloud:
    key = (name or "global").strip().lower()
    if key not in CLOUDS:
        raise GraphConfigError(f"cloud: unknown cloud {name!r}; use one of {', '.join(CLOUDS)}")
    return CLOUDS[key]


def cloud_for_graph_url(graph_url: str) -> Cloud | None:
    """The national cloud whose Graph host this is (an msgraph connection names only the host)."""
    for cloud in CLOUDS.values():
        if graph_url.rstrip("/").lower() == cloud.graph_url:
            return cloud
    return None
