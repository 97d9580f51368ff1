"""Lock the fix in: the endpoints must not leak (pyleakhunt's pytest plugin).

python3 -m pytest examples/flask_leak/test_app.py            # the leak: xfail
LEAK_FIXED=1 python3 -m pytest examples/flask_leak/test_app.py   # fixed: pass
"""

import pytest
from app import app
from service import FIXED


@pytest.fixture
def client():
    return app.test_client()


@pytest.mark.xfail(not FIXED, reason="the leak this example is about", strict=True)
def test_app_metric_does_not_leak(leakhunt, client):
    leakhunt.assert_no_leak(client.get, "/app_metric/frontend", rounds=5, warmup=3)


@pytest.mark.no_leak(rounds=5, warmup=3)
def test_exchange_rate_does_not_leak(client):
    # The cache is bounded: once full, a request adds nothing.
    for currency in ("EUR", "USD", "GBP", "JPY"):
        client.get("/exchange_rate/" + currency)
