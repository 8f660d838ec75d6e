"""The framework's ceiling: a Flask app whose POST view parses the JSON body and returns 200.

Served by the same gunicorn.conf.py as Postbox: `gunicorn -c gunicorn.conf.py "bench.bare_app:create_app()"`.
"""
from flask import Flask, jsonify, request


def create_app():
    """Create the bare app; POSTBOX_DELIVERY is external so gunicorn.conf.py's hook starts nothing."""
    app = Flask(__name__)
    app.config["DELIVERY"] = "external"

    @app.get("/contactus")
    def form():
        return "<form method=post><input name=name></form>"

    @app.post("/contactus")
    def submit():
        document = request.get_json()
        return jsonify(ok=True, fields=len(document))

    return app
