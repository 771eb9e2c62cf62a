#!/usr/bin/env python3
"""A PyMongo application for the capture lab, with driver-side truth.

The driver is not modified. Truth is recorded beside it:
- `socket.socket.connect` is wrapped to note, for every socket the driver opens, its
  local address and the name of the driver thread that opened it (PyMongo names its
  monitor and RTT threads);
- CMAP events (connection created/closed, with server address and connection id) and
  SDAM heartbeat events (with the `awaited` flag) come from PyMongo's monitoring API.

With LAB_KEYLOG set, TLS secrets are written there in the SSLKEYLOGFILE format. PyMongo builds
its own `ssl.SSLContext` (not `create_default_context`, which would honour SSLKEYLOGFILE),
so the context's `keylog_filename` is set just before the driver wraps a socket with it.
"""
import argparse
import asyncio
import json
import os
import socket
import ssl
import threading
import time

import pymongo
from pymongo import monitoring

EVENTS = []
LOCK = threading.Lock()


def note(kind, **fields):
    with LOCK:
        fields.update(kind=kind, t=round(time.time(), 6))
        fields.setdefault("thread", threading.current_thread().name)
        EVENTS.append(fields)


_connect = socket.socket.connect


def connect(self, address):
    result = _connect(self, address)
    try:
        local = self.getsockname()
        note("socket", local="%s:%d" % local[:2], peer="%s:%d" % tuple(address[:2]))
    except OSError:
        pass
    return result


socket.socket.connect = connect

# AsyncMongoClient connects through the event loop (non-blocking), and its monitors are
# asyncio tasks named as the sync driver names its threads: the task stands in for the
# thread.
_sock_connect = asyncio.selector_events.BaseSelectorEventLoop.sock_connect


async def sock_connect(self, sock, address):
    result = await _sock_connect(self, sock, address)
    try:
        task = asyncio.current_task()
        note("socket", local="%s:%d" % sock.getsockname()[:2], peer="%s:%d" % tuple(address[:2]),
             thread=task.get_name() if task else "")
    except OSError:
        pass
    return result


asyncio.selector_events.BaseSelectorEventLoop.sock_connect = sock_connect

_wrap_socket = ssl.SSLContext.wrap_socket


def wrap_socket(self, *args, **kwargs):
    if os.environ.get("LAB_KEYLOG") and not self.keylog_filename:
        self.keylog_filename = os.environ["LAB_KEYLOG"]
    sock = _wrap_socket(self, *args, **kwargs)
    try:
        local = sock.getsockname()
        note("tls", local="%s:%d" % local[:2], version=sock.version(), cipher=sock.cipher()[0])
    except (OSError, TypeError):
        pass
    return sock


ssl.SSLContext.wrap_socket = wrap_socket


class Pool(monitoring.ConnectionPoolListener):
    def connection_created(self, e):
        note("cmap-created", address="%s:%d" % e.address, id=e.connection_id)

    def connection_closed(self, e):
        note("cmap-closed", address="%s:%d" % e.address, id=e.connection_id, reason=str(e.reason))

    def pool_created(self, e):
        pass

    def pool_ready(self, e):
        pass

    def pool_cleared(self, e):
        pass

    def pool_closed(self, e):
        pass

    def connection_ready(self, e):
        pass

    def connection_check_out_started(self, e):
        pass

    def connection_check_out_failed(self, e):
        pass

    def connection_checked_out(self, e):
        pass

    def connection_checked_in(self, e):
        pass


class Heartbeat(monitoring.ServerHeartbeatListener):
    def started(self, e):
        note("heartbeat-started", address="%s:%d" % e.connection_id, awaited=getattr(e, "awaited", False))  # PyMongo 3.x has no awaited

    def succeeded(self, e):
        pass

    def failed(self, e):
        note("heartbeat-failed", address="%s:%d" % e.connection_id, awaited=getattr(e, "awaited", False))  # PyMongo 3.x has no awaited


def work(client, until, pause, name):
    coll = client.labdb[name]
    i = 0
    while time.time() < until:
        try:
            coll.insert_one({"i": i, "who": name})
            list(coll.find({"who": name}).limit(3))
        except Exception as e:  # keep the workload going; the capture shows what happened
            note("op-error", error=repr(e))
        i += 1
        time.sleep(pause)


async def work_async(client, until, pause, name):
    coll = client.labdb[name]
    i = 0
    while time.time() < until:
        try:
            await coll.insert_one({"i": i, "who": name})
            await coll.find({"who": name}).limit(3).to_list()
        except Exception as e:
            note("op-error", error=repr(e))
        i += 1
        await asyncio.sleep(pause)


async def main_async(a, listeners):
    """The same workload through AsyncMongoClient (PyMongo's asyncio API): one task per
    worker instead of a thread."""
    until = time.time() + a.seconds
    clients = [pymongo.AsyncMongoClient(a.uri, event_listeners=listeners) for _ in range(a.clients)]
    tasks = []
    for ci, client in enumerate(clients):
        try:
            await client.admin.command("ping")
        except Exception as e:
            note("op-error", error=repr(e))
        for ti in range(a.threads):
            tasks.append(asyncio.create_task(work_async(client, until, a.pause, "w%d_%d" % (ci, ti)), name="app-worker-%d-%d" % (ci, ti)))
    await asyncio.gather(*tasks)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--uri", required=True)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--clients", type=int, default=1, help="MongoClient instances alive at once")
    p.add_argument("--threads", type=int, default=1, help="concurrent workers per client")
    p.add_argument("--pause", type=float, default=0.5, help="seconds between a worker's operations")
    p.add_argument("--idle-clients", action="store_true", help="clients only connect, no operations")
    p.add_argument("--events", required=True)
    p.add_argument("--drop", action="append", default=[],
                   help="AT:READPREF:HOST,...: at AT seconds, send dropConnections for HOSTs (as given, "
                        "even without a port) to the member READPREF selects (primary or secondary)")
    p.add_argument("--async", dest="use_async", action="store_true", help="AsyncMongoClient, asyncio tasks as workers")
    a = p.parse_args()

    listeners = [Pool(), Heartbeat()]
    if a.use_async:
        asyncio.run(main_async(a, listeners))
        note("driver", name="PyMongo (async)", version=pymongo.version)
        with open(a.events, "w") as f:
            json.dump(EVENTS, f, indent=0)
        return
    until = time.time() + a.seconds
    clients = [pymongo.MongoClient(a.uri, event_listeners=listeners) for _ in range(a.clients)]
    threads = []
    for ci, client in enumerate(clients):
        try:
            client.admin.command("ping")
        except Exception as e:
            note("op-error", error=repr(e))
        if a.idle_clients:
            continue
        for ti in range(a.threads):
            t = threading.Thread(target=work, args=(client, until, a.pause, "w%d_%d" % (ci, ti)), name="app-worker-%d-%d" % (ci, ti))
            t.start()
            threads.append(t)
    start = time.time()
    drops = sorted((float(d.split(":", 2)[0]), d.split(":", 2)[1], d.split(":", 2)[2]) for d in a.drop)
    while time.time() < until:
        while drops and time.time() - start >= drops[0][0]:
            _, pref, hosts = drops.pop(0)
            read_pref = pymongo.ReadPreference.SECONDARY if pref == "secondary" else pymongo.ReadPreference.PRIMARY
            try:
                reply = clients[0].admin.command({"dropConnections": 1, "hostAndPort": hosts.split(",")},
                                                 read_preference=read_pref)
                note("dropConnections", hosts=hosts.split(","), read_preference=pref, reply=repr(reply))
            except Exception as e:
                note("op-error", error=repr(e))
        time.sleep(0.2)
    for t in threads:
        t.join()
    note("driver", name="PyMongo", version=pymongo.version)
    with open(a.events, "w") as f:
        json.dump(EVENTS, f, indent=0)
    # Leave the clients open: closing would add endSessions/teardown traffic after the
    # capture window that a real long-running app would not show. The process exit
    # closes the sockets.


if __name__ == "__main__":
    main()
