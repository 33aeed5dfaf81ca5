"""The mailbox viewer served at the emulator's root."""

from airflow_graph_mail.emulator.viewer.pages import Viewer

__all__ = ["Viewer"]
