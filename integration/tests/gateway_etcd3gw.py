"""etcd3gw (OpenStack's client of etcd's JSON gateway) against one server.

Run by integration/tests/gateway.rs with the venv `make test-deps` makes:
    python gateway_etcd3gw.py HOST PORT
Exits 0 after printing "etcd3gw ok"; any mismatch raises (non-zero exit).
"""

import sys
import threading

import etcd3gw


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    client = etcd3gw.client(host=host, port=port, timeout=10)

    # Discovery: /version says 3.4, so the paths are /v3/.
    assert client.api_path == "/v3/", client.api_path
    assert client.status()["version"].startswith("3.4"), client.status()
    assert len(client.members()) == 1, client.members()

    # KV.
    assert client.put("/gw/a", "1")
    assert client.put("/gw/b", "2")
    assert client.get("/gw/a") == [b"1"], client.get("/gw/a")
    assert client.get("/gw/none") == [], client.get("/gw/none")
    assert sorted(v for v, _ in client.get_prefix("/gw/")) == [b"1", b"2"]
    assert client.create("/gw/c", "3")
    assert not client.create("/gw/c", "4")
    assert client.replace("/gw/c", "3", "5")
    assert not client.replace("/gw/c", "3", "6")
    assert client.get("/gw/c") == [b"5"]
    assert client.delete("/gw/c")
    assert not client.delete("/gw/c")

    # Leases: grant, attach, keep alive, time to live, revoke.
    lease = client.lease(ttl=60)
    assert lease.id > 0
    assert client.put("/gw/leased", "x", lease=lease)
    assert 0 < lease.ttl() <= 60, lease.ttl()
    assert lease.refresh() == 60
    assert lease.keys() == [b"/gw/leased"], lease.keys()
    assert lease.revoke()
    assert client.get("/gw/leased") == []

    # Lock (a transaction on a leased key).
    lock = client.lock(id="gw-lock", ttl=30)
    assert lock.acquire()
    assert lock.is_acquired()
    assert lock.release()

    # Watch from the next revision: every event of a known put sequence,
    # in order, however late the watch stream starts.
    revision = int(client.status()["header"]["revision"])
    events, cancel = client.watch("/gw/w", start_revision=revision + 1)
    for i in range(5):
        client.put("/gw/w", f"v{i}")
    seen = []
    done = threading.Event()

    def consume() -> None:
        for event in events:
            seen.append(event["kv"]["value"])
            if len(seen) == 5:
                break
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(20), f"the watch saw only {seen}"
    cancel()
    assert seen == [f"v{i}".encode() for i in range(5)], seen
    print("etcd3gw ok")


if __name__ == "__main__":
    main()
