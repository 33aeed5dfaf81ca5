"""The mailbox viewer served at the emulator's root."""

from graph_mail_emulator.faces.viewer.pages import Viewer

__all__ = ["Viewer"]
