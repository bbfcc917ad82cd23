"""Tests of the HTTP server against a real uvicorn server."""
