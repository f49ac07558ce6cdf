"""``grounding app``: a local web app (FastAPI) to ground a typed sentence in a video and to search an index."""

from grounding.app.server import AppSettings, create_app, serve

__all__ = ["AppSettings", "create_app", "serve"]
