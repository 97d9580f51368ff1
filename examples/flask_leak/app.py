"""The Flask app, with pyleakhunt's extension.

    python3 app.py [--port 8000]

serves it on 127.0.0.1 (werkzeug's threaded server).  The report is on a
port of its own, bound to the loopback interface: by default
http://127.0.0.1:8001/_leakhunt/ (HTML) and /_leakhunt/api (JSON), or the
port in the environment variable REPORT_PORT (0: any free port; the URL is
logged at start).  ``python3 load.py`` sends the app traffic.
"""

import argparse
import os

from flask import Flask, jsonify
from service import DownstreamPool, exchange_rate, fetch_metric, render_report

from pyleakhunt.flask import LeakHunt

app = Flask(__name__)
pool = DownstreamPool()


@app.route("/app_metric/<app>")
def app_metric(app):
    return jsonify(pool.call(fetch_metric, app))


@app.route("/exchange_rate/<currency>")
def rate(currency):
    return exchange_rate(currency)


@app.route("/report/<int:user>")
def report(user):
    return render_report(user)


@app.route("/healthz")
def healthz():
    return "ok"


# One line: count and tag every request by URL rule, sample what each
# endpoint retains every 2 s, serve the report on a loopback-only port.
LeakHunt(app, report=True, report_port=int(os.environ.get("REPORT_PORT", "8001")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app.run("127.0.0.1", args.port, threaded=True)
