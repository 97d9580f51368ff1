"""W3: Flask requests through the test client.

A small app (an HTML page rendered from a template string, a JSON API
listing items, a JSON API reading one item with a URL parameter and a query
string, and a form POST that appends to an in-memory store, which grows
slowly) is built and warmed up before the tracer starts; the timed loop
sends *n* requests, cycling over the four routes, through
``app.test_client()`` (the whole WSGI stack, no sockets).  Needs Flask.
"""

from __future__ import annotations

from typing import Any, Dict, List

from . import register
from .common import max_rss_bytes, settle, timed

PAGE = """<html><head><title>{{ title }}</title></head><body>
<h1>{{ title }}</h1><ul>{% for item in items %}
<li><a href="/api/items/{{ item.id }}">{{ item.name|e }}</a> {{ item.price }}</li>
{% endfor %}</ul></body></html>"""


def make_app() -> Any:
    from flask import Flask, abort, jsonify, render_template_string, request

    app = Flask("bench_w3")
    items = [{"id": i, "name": "item <%d>" % i, "price": i * 1.5} for i in range(20)]
    notes: List[Dict[str, str]] = []

    @app.route("/")
    def index() -> str:
        return render_template_string(PAGE, title="Items", items=items)

    @app.route("/api/items")
    def list_items() -> Any:
        return jsonify(items=items, count=len(items))

    @app.route("/api/items/<int:item_id>")
    def get_item(item_id: int) -> Any:
        if item_id >= len(items):
            abort(404)
        fields = request.args.get("fields", "id,name").split(",")
        return jsonify({f: items[item_id][f] for f in fields})

    @app.route("/notes", methods=["POST"])
    def add_note() -> Any:
        notes.append({"text": request.form["text"], "by": request.form["by"]})
        return jsonify(ok=True, notes=len(notes)), 201

    return app


def requests(client: Any, n: int) -> int:
    ok = 0
    for i in range(n):
        k = i % 4
        if k == 0:
            response = client.get("/")
        elif k == 1:
            response = client.get("/api/items")
        elif k == 2:
            response = client.get("/api/items/%d?fields=id,name,price" % (i % 20))
        else:
            response = client.post("/notes", data={"text": "note %d" % i, "by": "u"})
        ok += response.status_code < 300
    return ok


@register("w3")
def run(tracer: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """params: n (requests, 2,000)."""
    n = int(params.get("n", 2_000))
    app = make_app()
    client = app.test_client()
    requests(client, 40)  # warm up: templates compiled, routes matched once
    settle()
    result: Dict[str, Any] = {}
    tracer.start()
    ok = timed(result, "loop", requests, client, n)
    result.update(tracer.accounting())
    tracer.stop()
    result["ok_responses"] = ok
    if ok != n:
        raise RuntimeError("only %d of %d requests succeeded" % (ok, n))
    result["maxrss_end"] = max_rss_bytes()
    return result
