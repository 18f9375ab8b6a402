"""The MariaDB store unreachable for a while (through the fault proxy; the server keeps running).

Webhooks must get 503 and never 2xx while the store is away; everything acknowledged before
or after is delivered once it is back.
"""

from __future__ import annotations

import time

from tests.conftest import MYSQL_DSN
from tests.e2e.daemon import free_port, start_daemon
from tests.e2e.env import Env, wait_until
from tests.faults.harness import INBOUND_ONLY, WebhookLoad, check_history, pick, wait_settled
from tests.faults.proxy import FaultProxy


def test_mariadb_unreachable_webhooks_503_then_all_delivered(
    env: Env, mysql_db: tuple[str, str]
) -> None:
    outage = pick(8.0, 60.0)
    db, _ = mysql_db
    host_port = MYSQL_DSN.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "3306")
    proxy = FaultProxy(host, int(port))
    try:
        user = MYSQL_DSN.split("://", 1)[1].split("@", 1)[0]
        dsn = f"mysql://{user}@127.0.0.1:{proxy.port}/{db}"
        extra = "\n[inbound]\nflush_size = 50\nflush_interval = 1\n" + INBOUND_ONLY
        d = env.start(extra, daemon_extra=f'store = "mysql"\nmysql_dsn = "{dsn}"')
        total = int((outage + 10) * 30)
        load = WebhookLoad(env, lambda _: [d.port], records=120, total=total, rate=30).start()
        time.sleep(3)
        proxy.set_mode("down")
        down_at = time.time()
        wait_until(lambda: d.request("GET", "/readyz", token="")[0] == 503, what="store not ready")
        time.sleep(max(outage - (time.time() - down_at), 0))
        up_at = time.time()
        proxy.set_mode("pass")
        load.join(timeout=120)
        wait_settled(env, d, load.acked, timeout=90, what="all delivered")
        rep = check_history(env, load.acked)
        assert rep.ok, rep
        during = [s for s in load.sends if s.sent > down_at and s.answered < up_at]
        assert during, "no webhook was sent during the outage"
        # Never a 2xx for a change the store could not have committed; 503 so senders retry.
        assert not [s for s in during if 200 <= s.status < 300], "2xx while the store was away"
        assert {s.status for s in during} <= {503}, {s.status for s in during}
        assert proxy.resets > 0
    finally:
        proxy.close()


def test_a_pull_asked_for_before_the_store_opens_is_answered_503_at_once(env: Env) -> None:
    closed = free_port()  # nothing listens here: the store stays unreachable
    dsn = f"mysql://root@127.0.0.1:{closed}/syncd"
    d = start_daemon(
        env.tmp, env.config(daemon_extra=f'store = "mysql"\nmysql_dsn = "{dsn}"'), name="nostore"
    )
    env.daemons.append(d)
    d.wait_ready(path="/healthz")
    for path in ("/api/v1/pulls/contact", "/api/v1/pulls/contact?wait=true"):
        started = time.monotonic()
        status, body = d.json("POST", path, timeout=10)
        assert status == 503 and "starting" in body["error"], body
        assert time.monotonic() - started < 5
