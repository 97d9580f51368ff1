"""Send the example app traffic, then print what its report says.

python3 load.py [--url http://127.0.0.1:8000] [--report http://127.0.0.1:8001]
                [--seconds 20] [--clients 8]
"""

import argparse
import itertools
import json
import threading
import time
import urllib.request

APPS = ("frontend", "billing", "search", "checkout", "auth", "catalog", "ads")
#: 160 currencies for a cache of 128: it fills, then evicts.
CURRENCIES = [a + b + "X" for a in "ABCDEFGHIJKLMNOP" for b in "QRSTUVWXYZ"]


def paths():
    for i in itertools.count():
        yield "/app_metric/%s" % APPS[i % len(APPS)]
        yield "/exchange_rate/%s" % CURRENCIES[i % len(CURRENCIES)]
        yield "/report/%d" % (i % 1000)
        yield "/healthz"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--report",
        default="http://127.0.0.1:8001",
        help="the report's loopback port (the app's REPORT_PORT)",
    )
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    source = paths()
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds
    sent = [0]

    def client():
        while time.monotonic() < deadline:
            with lock:
                path = next(source)
                sent[0] += 1
            with opener.open(args.url + path, timeout=10) as response:
                response.read()

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.1)
    with opener.open(args.report + "/_leakhunt/api", timeout=10) as response:
        doc = json.load(response)
    print("sent %d requests in %.0f s" % (sent[0], args.seconds))
    for e in doc["endpoints"]:
        per = e["bytes_per_request"]
        print(
            "%-28s %6d requests %9d bytes retained %8s B/request  %s"
            % (
                e["endpoint"],
                e["requests"],
                e["retained_bytes"],
                "-" if per is None else "%+.0f" % per,
                e["verdict"],
            )
        )
        for site in e["sites"][:1] if e["leaking"] else []:
            print("    at %s:%d" % (site["filename"], site["lineno"]))


if __name__ == "__main__":
    main()
