"""The manager's page: one team's quarter as a typed view, rendered as one self-contained
HTML document (inline CSS and SVG, no external request). The CLI writes it to a file; the
service serves it too, with each rep's name linking to the rep's page (one rep's quarter,
from the same view and render pieces)."""

from models.team_quarter import teams_of
from serving.page.render import render_manager_page, render_rep_page
from serving.page.view import (
    ManagerView,
    PageInputError,
    RepNotInTeam,
    RepView,
    build_manager_view,
    build_rep_view,
)

__all__ = [
    "ManagerView",
    "PageInputError",
    "RepNotInTeam",
    "RepView",
    "build_manager_view",
    "build_rep_view",
    "render_manager_page",
    "render_rep_page",
    "teams_of",
]
