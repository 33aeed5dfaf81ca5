"""Sphinx configuration for the documentation site (`make docs`; warnings are errors)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# autodoc imports Airflow, which writes an airflow.cfg into its home: keep it in the build, not in ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "docs" / "_build" / "airflow-home"))
sys.path.insert(0, str(ROOT / "docs"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))  # graphmail_fields: the connection page's tables

project = "airflow-graph-mail"
author = "airflow-graph-mail developers"
copyright = "the airflow-graph-mail developers"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.intersphinx", "graphmail_fields"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "README.md"]

html_theme = "furo"
html_title = "airflow-graph-mail"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False  # Airflow's and the stdlib's own types are not in this site
intersphinx_mapping: dict = {}  # no network here: no external inventories
