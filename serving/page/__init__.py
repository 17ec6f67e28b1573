"""The manager's page: one team's quarter as a typed view, rendered as one self-contained
HTML document (inline CSS and SVG, no external request). The CLI writes it to a file; the
service serves the same string."""

from models.team_quarter import teams_of
from serving.page.render import render_manager_page
from serving.page.view import ManagerView, PageInputError, build_manager_view

__all__ = [
    "ManagerView",
    "PageInputError",
    "build_manager_view",
    "render_manager_page",
    "teams_of",
]
