#!/usr/bin/env python3
"""The capture lab: record real, unmodified MongoDB drivers against the test server and
write each case as testdata/lab/<case>/{capture.pcap, truth.json, server-connections.json}.

Usage: lab.py [CASE ...]   (no argument: every case)

Truth never comes from conn-attrib. Each connection's role is derived, per driver, from:
- PyMongo: the name of the driver thread that opened the socket (its monitor and RTT
  threads are named; AsyncMongoClient's monitor tasks carry the same names), recorded by
  the client script, plus the server's log;
- Node.js: the call stack that opened the socket, plus CMAP events and the server's log;
- Go: the call stack that dialled the socket (the client's dialer records it), plus the
  server's log;
- Rust: the server's log with the driver's documented design (below);
- mgo: the call stack that dialled the socket (DialInfo.DialServer records it), with the
  driver's design: no monitoring connections, every socket a pool socket;
- Java: the name of the thread that connected the socket (the client's SocketFactory
  records it; the driver's monitor threads are named "cluster-..."), plus the server's log;
- Ruby: the call stack that connected the socket (the client script wraps Ruby's own
  Socket#connect), plus the server's log;
- Perl: single-threaded by design (one link per server), confirmed by the server's log;
- libmongoc/PHP single-threaded: the driver's design (one connection per server that
  carries checks and operations), confirmed by the server's log;
- libmongoc pooled: the server's log (awaitable hellos = streaming monitor; hellos only
  = RTT/polling monitor; operations = pool) and the driver's documented threads.
The per-client expectation uses the settings the case gave the driver (minPoolSize, the
number of MongoClient instances it created), not anything estimated.

TLS cases (`tls` in the spec) serve TLS with a CA and server certificate generated at record
time (openssl CLI); the drivers connect with tls=true and that CA file and write a key log
(PyMongo: the client script sets its SSLContext's keylog_filename; Node.js: node's own
--tls-keylog; libmongoc and PHP, which use OpenSSL but have no key log option: the
LD_PRELOAD shim sslkeylog.c, which installs OpenSSL's keylog callback and records each
session's version and cipher with the socket whose ClientHello carried its client random).
The key log is stored beside the capture as keylog.txt; the client-side TLS version and
cipher of each connection go into the truth. The TLS cases repeat the plaintext lab's
drivers and modes (streaming, polling, single-threaded, pooled, PHP, several MongoClients,
pool churn, SCRAM), so a decrypted capture can be held to the same truth rules; a case's
`plaintext_twin` names the plaintext case it repeats with the same driver and settings.

Every process started is stopped by its PID; every case is bounded in time.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "testdata", "lab")
WORK = os.environ.get("LAB_WORK", "/tmp/conn-attrib-lab")
PY = os.environ.get("LAB_PYTHON", os.path.join(HERE, ".venv", "bin", "python"))
PY_OLD = os.environ.get("LAB_PYTHON_OLD", os.path.join(HERE, ".venv-old", "bin", "python"))
PY_3 = os.environ.get("LAB_PYTHON_3", os.path.join(HERE, ".venv-pymongo3", "bin", "python"))
# The Node.js driver, one folder per major version (record-all.sh installs each): "node"
# is the current one; 3.x has the legacy topology, 4.x is the first unified-only major.
NODE_DIRS = {d: os.path.join(HERE, d) for d in ("node", "node3", "node4", "node6", "mongoose", "mongoose5", "mongosh")}

# What mongosh runs in its lab cases: an administrator's script, a write and a read every
# half second for the case's seconds (the shell's `sleep`, then the loop goes on).
MONGOSH_SCRIPT = """
const until = Date.now() + %d * 1000;
const coll = db.getSiblingDB('labdb').getCollection('mongosh');
let i = 0;
while (Date.now() < until) {
  coll.insertOne({ i: i++ });
  coll.find({}).limit(3).toArray();
  sleep(500);
}
"""
BUILD = os.environ.get("LAB_BUILD", os.path.join(HERE, "build"))

# Debian's libmongodb-java: the Java driver 3.6.3, unmodified.
JAVA_DRIVER = "/usr/share/java/mongo-java-driver.jar"

RS = "127.0.0.11:27017,127.0.0.12:27017,127.0.0.13:27017"
RS_URI = "mongodb://" + RS + "/?replicaSet=rs0"


def uri(base, **opts):
    sep = "&" if "?" in base else "/?"
    if base.endswith("/?replicaSet=rs0"):
        sep = "&"
    return base + sep + "&".join("%s=%s" % kv for kv in opts.items())


def rs_case(driver, app, what, min_pool_size=1, threads=1, seconds=12, server=(), cut_after=None, heartbeat_ms=2000, **opts):
    """One driver against the replica set (modern, or the server's flags), heartbeat 2 s
    unless `heartbeat_ms` says otherwise (None: the driver's default);
    `cut_after`: keep only the capture after that many seconds; `min_pool_size` None: the
    URI sets none (a driver without a pool)."""
    pool = {} if min_pool_size is None else dict(minPoolSize=min_pool_size)
    heartbeat = {} if heartbeat_ms is None else dict(heartbeatFrequencyMS=heartbeat_ms)
    spec = dict(what=what, seconds=seconds, clients=[dict(
        driver=driver, uri=uri(RS_URI, appName=app, **opts, **heartbeat, **pool),
        min_pool_size=min_pool_size or 0, threads=threads)])
    if server:
        spec["server"] = list(server)
    if cut_after:
        spec["cut_after"] = cut_after
    return spec


# What the AWS Lambda runtime sets, as the handshake spec's FaaS detection reads it.
LAMBDA_ENV = {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.11", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
              "AWS_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}


# Each case: the server's flags, the clients (driver, settings, workload), how long.
# `instances` and `min_pool_size` are what the client was told: the truth's expectation.
CASES = {
    "streaming-default": dict(
        what="PyMongo with default settings (heartbeatFrequencyMS 10 s, minPoolSize 0) against a modern replica set: streaming monitor + RTT per node, pool only where operations run",
        seconds=25, clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="orders-api"), min_pool_size=0)]),
    "streaming-minpool": dict(
        what="PyMongo, minPoolSize=2, heartbeat 2 s: the textbook (minPoolSize + 2) x nodes; recorded with tcpdump -i any (Linux cooked v2) and stored as pcapng",
        seconds=12, iface="any", pcapng=True,
        clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="orders-api", minPoolSize=2, heartbeatFrequencyMS=2000), min_pool_size=2)]),
    "poll-mode": dict(
        what="PyMongo with serverMonitoringMode=poll against a modern server: one polling monitor per node, no RTT connection",
        seconds=12, clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="reports", serverMonitoringMode="poll", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "legacy-42": dict(
        what="PyMongo 4.10 against a 4.2-era server (maxWireVersion 8, no topologyVersion): drivers must poll",
        seconds=12, server=["--legacy-42"],
        clients=[dict(driver="pymongo-old", uri=uri(RS_URI, appName="legacy-app", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "node-streaming": dict(
        what="The Node.js driver, minPoolSize=1, heartbeat 2 s, against a modern replica set",
        seconds=12, clients=[dict(driver="node", uri=uri(RS_URI, appName="web-frontend", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "mongoc-single": dict(
        what="libmongoc mongoc_client_t (single-threaded): one connection per node for checks and operations",
        seconds=12, clients=[dict(driver="mongoc-single", uri=uri(RS_URI, appName="c-single"), min_pool_size=0)]),
    "mongoc-pooled": dict(
        what="libmongoc mongoc_client_pool_t with 2 worker threads, heartbeat 2 s",
        seconds=12, clients=[dict(driver="mongoc-pooled", uri=uri(RS_URI, appName="c-pooled", heartbeatFrequencyMS=2000), min_pool_size=0, threads=2)]),
    "php": dict(
        what="PHP ext-mongodb (libmongoc single-threaded underneath)",
        seconds=12, clients=[dict(driver="php", uri=uri(RS_URI, appName="php-app"), min_pool_size=0)]),
    "php-workers": dict(
        what="Four PHP processes side by side on one host with the same connection string, as PHP-FPM runs its workers: each has its own single-threaded client, so one connection per node per worker",
        seconds=12, clients=[dict(driver="php", uri=uri(RS_URI, appName="php-fpm"), min_pool_size=0, processes=4)]),
    "multi-client": dict(
        what="One PyMongo process creating 3 MongoClient instances (a client per request, the FaaS anti-pattern): 3 monitor sets per node",
        seconds=12, clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="lambda-handler", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1, instances=3)]),
    "two-apps": dict(
        what="Two applications on two client addresses (127.0.0.21 PyMongo, 127.0.0.22 Node.js) sharing one replica set",
        seconds=12, clients=[
            dict(driver="pymongo", src="127.0.0.21", uri=uri(RS_URI, appName="orders-api", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1),
            dict(driver="node", src="127.0.0.22", uri=uri(RS_URI, appName="billing", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "three-drivers": dict(
        what="The same host running PyMongo, the Node.js driver and libmongoc pooled at once",
        seconds=12, clients=[
            dict(driver="pymongo", uri=uri(RS_URI, appName="py-svc", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1),
            dict(driver="node", uri=uri(RS_URI, appName="node-svc", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1),
            dict(driver="mongoc-pooled", uri=uri(RS_URI, appName="c-svc", heartbeatFrequencyMS=2000), min_pool_size=0, threads=1)]),
    "compression-snappy": dict(
        what="PyMongo negotiating snappy compression", seconds=8,
        clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="zip-snappy", compressors="snappy", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "compression-zlib": dict(
        what="PyMongo negotiating zlib compression", seconds=8,
        clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="zip-zlib", compressors="zlib", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "compression-zstd": dict(
        what="PyMongo negotiating zstd compression", seconds=8,
        clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="zip-zstd", compressors="zstd", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "load-balanced": dict(
        what="PyMongo with loadBalanced=true against a mongos behind a load balancer: no monitors, every connection pooled",
        seconds=10, server=["--topology", "load-balanced"],
        clients=[dict(driver="pymongo", uri="mongodb://127.0.0.11:27017/?loadBalanced=true&appName=lb-app&minPoolSize=2", min_pool_size=2)]),
    "lb-backends": dict(
        what="loadBalanced=true through an L4 load balancer in front of 3 mongos (the test server's --backends 3: connections go to each in turn, each mongos answering with its own serviceId and topologyVersion.processId); PyMongo on 127.0.0.21 and the Node.js driver on 127.0.0.22, minPoolSize=2, 2 workers each: no monitors, every connection pooled, and three processes behind one address that never restarted",
        seconds=10, server=["--topology", "load-balanced", "--backends", "3"],
        clients=[
            dict(driver="pymongo", src="127.0.0.21", uri="mongodb://127.0.0.11:27017/?loadBalanced=true&appName=lb-py&minPoolSize=2", min_pool_size=2, threads=2),
            dict(driver="node", src="127.0.0.22", uri="mongodb://127.0.0.11:27017/?loadBalanced=true&appName=lb-node&minPoolSize=2", min_pool_size=2, threads=2)]),
    "mongos-backends": dict(
        what="PyMongo without loadBalanced against one mongos address that is an L4 load balancer in front of 2 mongos (the test server's --backends 2): the driver sees one mongos and monitors it as one, while its monitor, RTT and pool connections land on either process; minPoolSize=1, heartbeat 2 s",
        seconds=10, server=["--topology", "mongos", "--hosts", "127.0.0.11:27017", "--backends", "2"],
        clients=[dict(driver="pymongo", uri="mongodb://127.0.0.11:27017/?appName=via-l4&heartbeatFrequencyMS=2000&minPoolSize=1", min_pool_size=1, threads=2)]),
    "proxy-members": dict(
        what="One address, 127.0.0.10, that is a TCP proxy (a Kubernetes Service selecting every member, HAProxy) in front of the whole replica set: the test server's --proxy passes each new connection to the next member in turn. PyMongo on 127.0.0.21 and the Node.js driver on 127.0.0.22 connect through it with directConnection=true, minPoolSize=2, heartbeat 2 s, 2 workers each: each sees one server and monitors it as one, while its monitor, RTT and pool connections land on the primary or a secondary. (The test server accepts writes on secondaries; a real one refuses them with NotWritablePrimary.)",
        seconds=10, server=["--proxy", "127.0.0.10:27017"],
        clients=[
            dict(driver="pymongo", src="127.0.0.21", uri="mongodb://127.0.0.10:27017/?directConnection=true&appName=via-service&heartbeatFrequencyMS=2000&minPoolSize=2", min_pool_size=2, threads=2),
            dict(driver="node", src="127.0.0.22", uri="mongodb://127.0.0.10:27017/?directConnection=true&appName=via-service-node&heartbeatFrequencyMS=2000&minPoolSize=2", min_pool_size=2, threads=2)]),
    "mongos": dict(
        what="PyMongo against two mongos routers (msg isdbgrid)",
        seconds=10, server=["--topology", "mongos", "--hosts", "127.0.0.11:27017,127.0.0.12:27017"],
        clients=[dict(driver="pymongo", uri="mongodb://127.0.0.11:27017,127.0.0.12:27017/?appName=via-mongos&heartbeatFrequencyMS=2000&minPoolSize=1", min_pool_size=1)]),
    "standalone": dict(
        what="PyMongo against a standalone server (no replica set), minPoolSize=2, heartbeat 2 s: (minPoolSize + 2) x 1 node",
        seconds=10, server=["--topology", "standalone", "--hosts", "127.0.0.11:27017"],
        clients=[dict(driver="pymongo", uri="mongodb://127.0.0.11:27017/?appName=standalone-app&heartbeatFrequencyMS=2000&minPoolSize=2", min_pool_size=2)]),
    "pool-growth": dict(
        what="PyMongo with 12 concurrent workers and minPoolSize=1: the primary's pool grows past minPoolSize",
        seconds=10, clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="busy-api", heartbeatFrequencyMS=2000, minPoolSize=1, maxPoolSize=50), min_pool_size=1, threads=12, pause=0.01)]),
    "pool-churn": dict(
        what="PyMongo with maxIdleTimeMS=1000 and bursty workers: idle pool connections are closed and reopened",
        seconds=14, clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="bursty", heartbeatFrequencyMS=2000, maxIdleTimeMS=1000), min_pool_size=0, threads=4, pause=2.5)]),
    "auth": dict(
        what="PyMongo authenticating with SCRAM-SHA-256 (user lab), minPoolSize=2: pool connections authenticate, monitors do not",
        seconds=10, clients=[dict(driver="pymongo", uri="mongodb://lab:lab-pass@" + RS + "/?replicaSet=rs0&authSource=admin&authMechanism=SCRAM-SHA-256&appName=secure-app&heartbeatFrequencyMS=2000&minPoolSize=2", min_pool_size=2)]),
    "cut-capture": dict(
        what="A 24 s PyMongo session (minPoolSize=2, heartbeat 2 s) of which only the last 10 s were kept: every connection predates the capture, no handshake is seen",
        seconds=24, cut_after=14,
        clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="long-running", heartbeatFrequencyMS=2000, minPoolSize=2), min_pool_size=2)]),
    "go-streaming": rs_case("go", "go-svc", "The Go driver (Debian's 1.8.4), minPoolSize=1, heartbeat 2 s, against a modern replica set: streaming monitor + RTT per node", threads=2),
    "rust-streaming": rs_case("rust", "rust-svc", "The Rust driver (crates.io mongodb 3), minPoolSize=1, heartbeat 2 s, against a modern replica set: streaming monitor + RTT per node", threads=2),
    "go-legacy-42": rs_case("go", "go-legacy", "The Go driver against a 4.2-era server (maxWireVersion 8, no topologyVersion): polling monitors, minPoolSize=1, heartbeat 2 s",
                            server=["--legacy-42"]),
    "go-cut-capture": rs_case("go", "go-long-running", "A 24 s Go driver session (minPoolSize=2, heartbeat 2 s, 2 workers) of which only the last 10 s were kept: no handshake is seen",
                              min_pool_size=2, threads=2, seconds=24, cut_after=14),
    "go-load-balanced": dict(
        what="The Go driver with loadBalanced=true against a mongos behind a load balancer, minPoolSize=2: no monitors, every connection pooled",
        seconds=10, server=["--topology", "load-balanced"],
        clients=[dict(driver="go", uri="mongodb://127.0.0.11:27017/?loadBalanced=true&appName=go-lb&minPoolSize=2", min_pool_size=2, threads=2)]),
    "rust-auth": dict(
        what="The Rust driver authenticating with SCRAM-SHA-256 (user lab, speculative authentication in the handshake), minPoolSize=2, heartbeat 2 s: pool connections authenticate, monitors do not",
        seconds=10, clients=[dict(driver="rust", uri="mongodb://lab:lab-pass@" + RS + "/?replicaSet=rs0&authSource=admin&authMechanism=SCRAM-SHA-256&appName=rust-secure&heartbeatFrequencyMS=2000&minPoolSize=2", min_pool_size=2)]),
    "rust-poll-mode": rs_case("rust", "rust-poll", "The Rust driver with serverMonitoringMode=poll against a modern server: one polling monitor per node, no RTT connection, minPoolSize=1, heartbeat 2 s", serverMonitoringMode="poll"),
    "java-legacy-driver": rs_case("java", "java-svc", "The Java driver 3.6 (Debian's package) against a modern replica set, minPoolSize=1, heartbeat 2 s, 2 worker threads: a driver from before the streaming protocol polls with isMaster on a monitor thread per node", threads=2),
    "ruby-legacy-driver": rs_case("ruby", "ruby-svc", "The Ruby driver 2.5 (Debian's ruby-mongo) against a modern replica set, minPoolSize=1, heartbeat 2 s, 2 worker threads: a driver from before the streaming protocol polls with ismaster on one monitor connection per node; its address resolver first connects to each node once and closes without a byte sent", threads=2),
    "perl-single-threaded": rs_case("perl", "perl-app", "The MongoDB Perl driver 2.2 (Debian's libmongodb-perl), heartbeat 2 s: single-threaded, one link per node carrying its topology checks and the operations (the driver has no minPoolSize)", min_pool_size=None),
    "perl-workers": dict(
        what="Three processes of a Perl application side by side on one host (a pre-forking server's workers), the Perl driver 2.2 with its default 60 s heartbeat: each worker its own single-threaded client, one link per node",
        seconds=12, clients=[dict(driver="perl", uri=uri(RS_URI, appName="perl-workers"), min_pool_size=0, processes=3)]),
    "perl-cut-capture": rs_case("perl", "perl-long-running", "A 24 s Perl driver session (single-threaded, heartbeat 2 s) of which only the last 10 s were kept: no handshake is seen, the secondaries' links only check", min_pool_size=None, seconds=24, cut_after=14),
    "mongoc-single-heartbeat-2s": rs_case("mongoc-single", "c-single-2s", "libmongoc mongoc_client_t (single-threaded) with heartbeatFrequencyMS=2000: it checks every node more often than it has work for the secondaries, whose links only check (as any single-threaded client does over a capture longer than its 60 s default)", min_pool_size=None),
    "mgo-legacy-go": dict(
        what="mgo (gopkg.in/mgo.v2, Debian's r2016.08.01), the community Go driver of many older services, against a 4.2-era server (mgo needs getnonce, which 6.0 removed), 2 workers copying the session per request, 75 s: no handshake metadata and no monitoring connections, its cluster syncs every server with ismaster every 30 s over pool sockets",
        seconds=75, server=["--legacy-42"], clients=[dict(driver="mgo", uri=uri(RS_URI, appName="mgo-svc"), min_pool_size=0, threads=2)]),
    "pymongo-async": dict(
        what="PyMongo's AsyncMongoClient (asyncio), minPoolSize=1, heartbeat 2 s, 3 worker tasks: its monitors are asyncio tasks, named as the sync driver names its threads",
        seconds=12, clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="py-async", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1, threads=3, **{"async": True})]),
    "faas-lambda": dict(
        what="PyMongo and the Node.js driver as if in AWS Lambda (AWS_EXECUTION_ENV, AWS_LAMBDA_RUNTIME_API and AWS_REGION set, as the Lambda runtime sets them), default serverMonitoringMode (auto), heartbeat 2 s: in a FaaS environment the drivers poll, with no RTT connection, and say so in the handshake's client.env",
        seconds=12, clients=[
            dict(driver="pymongo", uri=uri(RS_URI, appName="lambda-py", heartbeatFrequencyMS=2000), min_pool_size=0, env=LAMBDA_ENV),
            dict(driver="node", uri=uri(RS_URI, appName="lambda-node", heartbeatFrequencyMS=2000), min_pool_size=0, env=LAMBDA_ENV)]),
    "pymongo3-streaming": rs_case("pymongo3", "py3-svc", "PyMongo 3.13 (the last 3.x), minPoolSize=1, heartbeat 2 s, 2 workers, against a modern replica set", threads=2),
    "node3-legacy-topology": rs_case("node3", "node3-legacy", "The Node.js driver 3.7 with its default legacy topology (no useUnifiedTopology: old mongoose 5 applications), heartbeat 2 s asked (the legacy topology checks every 10 s), 2 workers: no monitoring connections, the servers' checks ride on pool connections", min_pool_size=0, threads=2),
    # Mongoose, the most used Node.js library on top of the driver: its handshake names the
    # driver "nodejs|Mongoose" with both versions ("6.12.0|8.9.5"), as the handshake spec
    # has wrapping libraries do.
    "mongoose": rs_case("mongoose", "mongoose-app", "Mongoose 8.9 (the Node.js driver 6.12 underneath; the handshake says nodejs|Mongoose), minPoolSize=1, heartbeat 2 s, 2 workers through a Mongoose model", threads=2),
    "mongosh": dict(
        what="mongosh 2.12, the MongoDB Shell (the Node.js driver 7.x underneath; the handshake says nodejs|mongosh), as an administrator runs it: nothing in the connection string but the replica set, so the driver's defaults (heartbeat 10 s, minPoolSize 0) and the shell's own appName; a script writing and reading every half second",
        seconds=25, clients=[dict(driver="mongosh", uri=RS_URI, min_pool_size=0)]),
    "mongoose5-legacy": rs_case("mongoose5", "mongoose5-app", "Mongoose 5.13 with its default legacy topology (the Node.js driver 3.7 underneath, no useUnifiedTopology; the handshake says nodejs|Mongoose 3.7.4|5.13.23), heartbeat 2 s asked, 2 workers: no monitoring connections, the checks ride on pool connections", min_pool_size=0, threads=2),
    "no-app-name": dict(
        what="PyMongo and the Node.js driver on one host with no appName (as most applications run): minPoolSize=1, heartbeat 2 s; each client is told apart by its driver alone",
        seconds=12, clients=[
            dict(driver="pymongo", uri=uri(RS_URI, heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1),
            dict(driver="node", uri=uri(RS_URI, heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "cut-default-heartbeat": rs_case("pymongo", "py-default-hb", "A 40 s PyMongo session with the default heartbeat (10 s), minPoolSize=1, 2 workers, of which only the last 14 s were kept: no handshake is seen, and the streaming monitors answer once per maxAwaitTimeMS (10 s) with no request in the window",
                                     threads=2, seconds=40, cut_after=26, heartbeat_ms=None),
    "node4-streaming": rs_case("node4", "node4-svc", "The Node.js driver 4.17 (the last 4.x, the first major with only the unified topology), minPoolSize=1, heartbeat 2 s, 2 workers, against a modern replica set", threads=2),
    "node6-streaming": rs_case("node6", "node6-svc", "The Node.js driver 6.22, minPoolSize=1, heartbeat 2 s, 2 workers, against a modern replica set", threads=2),
    "node-cut-default-heartbeat": rs_case("node", "node-default-hb", "A 40 s Node.js driver session with the default heartbeat (10 s), minPoolSize=1, 2 workers, of which only the last 14 s were kept",
                                          threads=2, seconds=40, cut_after=26, heartbeat_ms=None),
    "go-cut-default-heartbeat": rs_case("go", "go-default-hb", "A 40 s Go driver session with the default heartbeat (10 s), minPoolSize=1, 2 workers, of which only the last 14 s were kept",
                                        threads=2, seconds=40, cut_after=26, heartbeat_ms=None),
    "java-cut-default-heartbeat": rs_case("java", "java-default-hb", "A 40 s Java driver 3.6 session with the default heartbeat (10 s, polling), minPoolSize=1, 2 workers, of which only the last 14 s were kept",
                                          threads=2, seconds=40, cut_after=26, heartbeat_ms=None),
    "tls-pymongo": dict(
        what="PyMongo over TLS 1.3 (tls=true, the lab's CA), minPoolSize=1, heartbeat 2 s, with the key log the client wrote",
        seconds=12, tls=dict(),
        clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="tls-py", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "tls-node": dict(
        what="The Node.js driver over TLS 1.3 (node --tls-keylog), minPoolSize=1, heartbeat 2 s",
        seconds=12, tls=dict(),
        clients=[dict(driver="node", uri=uri(RS_URI, appName="tls-node", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "tls12-gcm": dict(
        what="PyMongo over TLS 1.2 (the server caps the version) with ECDHE-RSA-AES128-GCM-SHA256, minPoolSize=1, heartbeat 2 s",
        seconds=12, tls=dict(max_version="1.2", ciphers="ECDHE-RSA-AES128-GCM-SHA256"),
        clients=[dict(driver="pymongo", uri=uri(RS_URI, appName="tls12-gcm", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "tls12-chacha": dict(
        what="The Node.js driver over TLS 1.2 with ECDHE-RSA-CHACHA20-POLY1305 (RFC 7905), minPoolSize=1, heartbeat 2 s",
        seconds=12, tls=dict(max_version="1.2", ciphers="ECDHE-RSA-CHACHA20-POLY1305"),
        clients=[dict(driver="node", uri=uri(RS_URI, appName="tls12-chacha", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1)]),
    "member-restart": dict(
        what="One step of a rolling restart: secondary 127.0.0.12 stops about 6 s into the run (its clients' sockets closed, new connections refused) and is back 4 s later as a new process (a new topologyVersion.processId); PyMongo on 127.0.0.21 and the Node.js driver on 127.0.0.22, minPoolSize=1, heartbeat 2 s, 2 workers each: each driver replaces its monitor, RTT and pool connections to that member, and its connection attempts while the member is down are refused (SYN answered by RST)",
        seconds=18, server=["--restart-member", "127.0.0.12:27017", "--restart-at", "7", "--restart-down", "4"],
        clients=[
            dict(driver="pymongo", src="127.0.0.21", uri=uri(RS_URI, appName="orders-api", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1, threads=2),
            dict(driver="node", src="127.0.0.22", uri=uri(RS_URI, appName="billing", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1, threads=2)]),
    "stepdown": dict(
        what="A failover: the primary 127.0.0.11 steps down about 7 s into the run and 127.0.0.12 is elected (4.2+ behaviour: no connection closed, the topologyVersion counters move); PyMongo on 127.0.0.21 and the Node.js driver on 127.0.0.22, minPoolSize=1, heartbeat 2 s, 2 workers each: their monitors hear the new roles and writes move to the new primary",
        seconds=16, server=["--stepdown-at", "7"],
        clients=[
            dict(driver="pymongo", src="127.0.0.21", uri=uri(RS_URI, appName="orders-api", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1, threads=2),
            dict(driver="node", src="127.0.0.22", uri=uri(RS_URI, appName="billing", heartbeatFrequencyMS=2000, minPoolSize=1), min_pool_size=1, threads=2)]),
    "go-stepdown": rs_case("go", "go-failover", "The Go driver through the same failover as stepdown (primary 127.0.0.11 steps down about 7 s in, 127.0.0.12 elected, no connection closed), minPoolSize=1, heartbeat 2 s, 2 workers",
                           threads=2, seconds=16, server=("--stepdown-at", "7")),
    "mongoc-single-stepdown": rs_case("mongoc-single", "c-single-failover", "libmongoc mongoc_client_t (single-threaded) with heartbeatFrequencyMS=2000 through the same failover as stepdown: no monitors, its one connection per node checks and carries the operations, and hears the new roles on its next check",
                                      min_pool_size=None, seconds=16, server=("--stepdown-at", "7")),
    "go-member-restart": rs_case("go", "go-restart", "The Go driver through the same rolling-restart step as member-restart (secondary 127.0.0.12 stopped about 6 s in, back 4 s later as a new process), minPoolSize=1, heartbeat 2 s, 2 workers",
                                 threads=2, seconds=18, server=("--restart-member", "127.0.0.12:27017", "--restart-at", "7", "--restart-down", "4")),
    "cluster-stale": dict(
        what="A replica set's own connections, emulated as mongod opens them (internal handshake, heartbeats, oplog fetcher, replSetUpdatePosition), with 127.0.0.13 removed at 8 s (setVersion 2); PyMongo then sends dropConnections for it to the primary (host:port: its connections close) and to the secondary (no port: silently ignored, they stay open); a monitoring agent keeps monitoring the removed member directly",
        seconds=16, server=["--emulate-members", "--remove-member", "127.0.0.13:27017", "--remove-at", "8"],
        bpf="tcp portrange 27017-27019 and net 127.0.0.0/28",
        clients=[
            dict(driver="pymongo", uri=uri(RS_URI, appName="ops-console", heartbeatFrequencyMS=2000), min_pool_size=0,
                 drops=["10:primary:127.0.0.13:27017", "11.5:secondary:127.0.0.13"]),
            dict(driver="pymongo", uri="mongodb://127.0.0.13:27017/?directConnection=true&appName=agent-c&heartbeatFrequencyMS=2000",
                 min_pool_size=0, idle=True)]),
}


def tls_twin(plain, app, what):
    """A plaintext case repeated over TLS 1.3: the same driver, settings and length, under
    its own appName, so that the decrypted capture can be compared with the plaintext one."""
    spec = CASES[plain]
    old_app = lambda c: "appName=" + c["uri"].split("appName=")[1].split("&")[0]
    clients = [dict(c, uri=c["uri"].replace(old_app(c), "appName=" + app)) for c in spec["clients"]]
    return dict(spec, what=what, tls=dict(), plaintext_twin=plain, clients=clients)


def offering(spec, ciphers):
    """A Node.js TLS case whose clients offer only `ciphers` (node_client.js passes them on)."""
    clients = [dict(c, env=dict(c.get("env", {}), LAB_TLS_CIPHERS=ciphers)) for c in spec["clients"]]
    return dict(spec, clients=clients)


# A TLS twin of every plaintext driver and mode (issue 9: the keyless classifier is measured
# on them, and with keys they must read exactly like their twins).
CASES.update({
    "tls-poll-mode": tls_twin("poll-mode", "tls-poll", "PyMongo with serverMonitoringMode=poll over TLS 1.3: one polling monitor per node, no RTT connection, minPoolSize=1, heartbeat 2 s"),
    "tls-mongoc-single": tls_twin("mongoc-single", "tls-c-single", "libmongoc mongoc_client_t (single-threaded) over TLS 1.3: one connection per node for checks and operations; key log by the sslkeylog.so shim"),
    "tls-mongoc-pooled": tls_twin("mongoc-pooled", "tls-c-pooled", "libmongoc mongoc_client_pool_t with 2 worker threads over TLS 1.3, heartbeat 2 s; key log by the sslkeylog.so shim"),
    "tls-php": tls_twin("php", "tls-php", "PHP ext-mongodb (libmongoc single-threaded underneath) over TLS 1.3; key log by the sslkeylog.so shim"),
    "tls-php-workers": tls_twin("php-workers", "tls-php-fpm", "Four PHP processes side by side (PHP-FPM workers, each its own single-threaded client) over TLS 1.3; key log by the sslkeylog.so shim"),
    "tls-pool-churn": tls_twin("pool-churn", "tls-bursty", "PyMongo over TLS 1.3 with maxIdleTimeMS=1000 and bursty workers: idle pool connections are closed and reopened, each with a new TLS session"),
    "tls-auth": tls_twin("auth", "tls-secure", "PyMongo over TLS 1.3 authenticating with SCRAM-SHA-256 (user lab), minPoolSize=2, heartbeat 2 s: pool connections authenticate, monitors do not"),
    "tls-load-balanced": tls_twin("load-balanced", "tls-lb", "PyMongo with loadBalanced=true over TLS 1.3 against a mongos behind a load balancer: no monitors, every connection pooled"),
    "tls-legacy-42": tls_twin("legacy-42", "tls-legacy", "PyMongo 4.10 over TLS 1.3 against a 4.2-era server (no topologyVersion): polling monitors, heartbeat 2 s"),
    "tls-mongos": tls_twin("mongos", "tls-via-mongos", "PyMongo over TLS 1.3 against two mongos routers: streaming monitor + RTT per router"),
    "tls-go": tls_twin("go-streaming", "tls-go", "The Go driver over TLS 1.3 (Go's crypto/tls, the key log through tls.Config.KeyLogWriter), minPoolSize=1, heartbeat 2 s"),
    "tls-rust": tls_twin("rust-streaming", "tls-rust", "The Rust driver over TLS 1.3 with rustls (its default), minPoolSize=1, heartbeat 2 s: rustls resumes sessions, so later connections offer pre_shared_key instead of session_ticket; no key log can be had from the unmodified driver, so the case is read keyless only"),
    "tls-java": tls_twin("java-legacy-driver", "tls-java", "The Java driver 3.6 over TLS 1.3 with Java's JSSE (JDK 17), polling, minPoolSize=1, heartbeat 2 s, 2 workers: JSSE resumes sessions; it writes no key log, so the case is read keyless only"),
    # The lab's server picks AES-256-GCM under TLS 1.3 unless the client's preference rules:
    # then Go's crypto/tls picks AES-128-GCM (on AES hardware), and a Node.js client told
    # to offer only ChaCha20-Poly1305 gets it.
    "tls13-aes128-go": dict(tls_twin("go-streaming", "tls13-aes128-go", "The Go driver over TLS 1.3 with TLS_AES_128_GCM_SHA256, crypto/tls's own first choice (the server follows the client's preference), minPoolSize=1, heartbeat 2 s"),
                            tls=dict(client_preference=True)),
    "tls13-chacha-node": offering(tls_twin("node-streaming", "tls13-chacha-node", "The Node.js driver over TLS 1.3 with TLS_CHACHA20_POLY1305_SHA256 (the driver's `ciphers` TLS option), minPoolSize=1, heartbeat 2 s"),
                                  "TLS_CHACHA20_POLY1305_SHA256"),
    "tls-perl": tls_twin("perl-single-threaded", "tls-perl", "The Perl driver 2.2 over TLS 1.3 (IO::Socket::SSL on OpenSSL; key log by the sslkeylog.so shim), heartbeat 2 s: single-threaded, the secondaries' links only check"),
    "tls-cut-capture": tls_twin("cut-capture", "tls-long-running", "A 24 s PyMongo session over TLS 1.3 (minPoolSize=2, heartbeat 2 s) of which only the last 10 s were kept: no TLS handshake is seen, so the key log's sessions are found by trying their TLS 1.3 traffic secrets on the records (without the key log, roles come from record shapes alone)"),
    "tls-cut-default-heartbeat": tls_twin("cut-default-heartbeat", "tls-default-hb", "A 40 s PyMongo session over TLS 1.3 with the default heartbeat (10 s), minPoolSize=1, 2 workers, of which only the last 14 s were kept: no TLS handshake is seen, and the streaming monitors answer once per 10 s"),
    "tls-multi-client": tls_twin("multi-client", "tls-lambda", "One PyMongo process creating 3 MongoClient instances over TLS 1.3 (a client per request): 3 monitor sets per node, minPoolSize=1, heartbeat 2 s"),
})

TLS_HOSTS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
# The name each driver gives itself in the handshake's client.driver.name, for clients run
# without an appName.
DRIVER_NAMES = {"pymongo": "PyMongo", "node": "nodejs", "mongosh": "mongosh"}
# Drivers on OpenSSL without a key log option of their own: the lab preloads sslkeylog.so.
OPENSSL_SHIM_DRIVERS = ("mongoc-single", "mongoc-pooled", "php", "perl")
# Drivers whose client script cannot name the socket of each TLS session: what each
# connection negotiated is read from its ServerHello in the capture (tshark).
SERVER_HELLO_TLS_DRIVERS = ("go", "rust")
# Drivers whose TLS stack cannot write a key log without changing the driver: their TLS
# cases are read keyless only (rustls inside the Rust driver: no KeyLog is configured;
# Java's JSSE has no key log at all).
NO_KEYLOG_DRIVERS = ("rust", "java")


def keyless_only(spec):
    """A TLS case none of whose drivers can write a key log: it has no keylog.txt."""
    return "tls" in spec and all(c["driver"] in NO_KEYLOG_DRIVERS for c in spec["clients"])


def make_certs(work):
    """A throwaway CA and a server certificate for the lab's addresses (openssl CLI)."""
    ca_key, ca, key, csr, cert = (os.path.join(work, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    run = lambda *argv: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=conn-attrib lab CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=conn-attrib lab server")
    ext = os.path.join(work, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join("IP:" + h for h in TLS_HOSTS) + ",DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "2", "-extfile", ext)
    return ca, cert, key


class Procs:
    """Processes started by a case, stopped by PID whatever happens."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=5):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p, signal.SIGKILL)


def client_argv(c, seconds, events, ca=None, keylog=None):
    d = c["driver"]
    java_tls = []
    if ca and d == "java":
        # The Java driver 3.6 knows ssl=true only, and JSSE trusts a key store: the lab's
        # CA goes into one.
        store = ca + ".p12"
        if not os.path.exists(store):
            subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "lab-ca", "-file", ca, "-keystore", store,
                            "-storetype", "PKCS12", "-storepass", "lab-store"], check=True, stdout=subprocess.DEVNULL)
        java_tls = ["-Djavax.net.ssl.trustStore=" + store, "-Djavax.net.ssl.trustStorePassword=lab-store"]
        c = dict(c, uri=uri(c["uri"], ssl="true"))
    elif ca:
        c = dict(c, uri=uri(c["uri"], tls="true", tlsCAFile=ca))
    if d in ("pymongo", "pymongo-old", "pymongo3"):
        py = {"pymongo": PY, "pymongo-old": PY_OLD, "pymongo3": PY_3}[d]
        argv = [py, os.path.join(HERE, "clients", "pymongo_client.py"), "--uri", c["uri"], "--seconds", str(seconds),
                "--clients", str(c.get("instances", 1)), "--threads", str(c.get("threads", 1)),
                "--pause", str(c.get("pause", 0.5)), "--events", events]
        for d in c.get("drops", []):
            argv += ["--drop", d]
        if c.get("idle"):
            argv.append("--idle-clients")
        if c.get("async"):
            argv.append("--async")
    elif d == "mongosh":
        # The shell as an administrator runs it, no rc file; node_sockets.js preloaded
        # records which code opened each socket (LAB_EVENTS, set by run_case).
        shell = os.path.join(NODE_DIRS[d], "node_modules", "mongosh", "bin", "mongosh.js")
        argv = ["node", "--require", os.path.join(HERE, "clients", "node_sockets.js")] + \
            (["--tls-keylog=" + keylog] if keylog else []) + \
            [shell, c["uri"], "--quiet", "--norc", "--eval", MONGOSH_SCRIPT % seconds]
    elif d in NODE_DIRS:
        argv = ["node"] + (["--tls-keylog=" + keylog] if keylog else []) + [os.path.join(HERE, "clients", "node_client.js"), "--uri=" + c["uri"], "--seconds=%s" % seconds,
                "--clients=%d" % c.get("instances", 1), "--threads=%d" % c.get("threads", 1), "--events=" + events] + \
            (["--mongoose=1"] if d.startswith("mongoose") else [])
    elif d in ("mongoc-single", "mongoc-pooled"):
        argv = [os.path.join(BUILD, "mongoc_client"), d.split("-")[1], c["uri"], str(seconds), str(c.get("threads", 2))]
    elif d == "php":
        argv = ["php", os.path.join(HERE, "clients", "php_client.php"), c["uri"], str(seconds)]
    elif d == "go":
        argv = [os.path.join(BUILD, "go_client"), c["uri"], str(seconds), str(c.get("threads", 1)), events]
    elif d == "mgo":
        # mgo takes no URI options beyond these; the case's appName names it in the lab only
        # (mgo sends no client metadata).
        hosts = c["uri"].split("mongodb://")[1].split("/")[0]
        rs = c["uri"].split("replicaSet=")[1].split("&")[0]
        argv = [os.path.join(BUILD, "mgo_client"), hosts, rs, str(seconds), str(c.get("threads", 1)), events]
    elif d == "rust":
        argv = [os.path.join(BUILD, "rust_client"), c["uri"], str(seconds), str(c.get("threads", 1))]
    elif d == "ruby":
        argv = ["ruby", os.path.join(HERE, "clients", "ruby_client.rb"), c["uri"], str(seconds), str(c.get("threads", 1)), events]
    elif d == "perl":
        argv = ["perl", os.path.join(HERE, "clients", "perl_client.pl"), c["uri"], str(seconds)]
    elif d == "java":
        argv = ["java"] + java_tls + ["-cp", os.path.join(BUILD, "java") + ":" + JAVA_DRIVER, "JavaClient", c["uri"], str(seconds),
                str(c.get("threads", 1)), events]
    else:
        raise ValueError(d)
    return argv


def run_case(name, spec):
    work = os.path.join(WORK, name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    seconds = spec["seconds"]
    procs = Procs()
    try:
        server_log = os.path.join(work, "server.log")
        tls_args, ca = [], None
        if "tls" in spec:
            ca, cert, key = make_certs(work)
            tls_args = ["--tls-cert", cert, "--tls-key", key, "--tls-max-version", spec["tls"].get("max_version", "1.3")]
            if spec["tls"].get("ciphers"):
                tls_args += ["--tls-ciphers", spec["tls"]["ciphers"]]
            if spec["tls"].get("client_preference"):
                tls_args.append("--tls-client-preference")
        server = procs.start([PY, os.path.join(HERE, "mongo_test_server.py"), "--log", server_log,
                              "--max-seconds", str(seconds + 15)] + spec.get("server", []) + tls_args,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = server.stdout.readline()
        if not line.startswith("listening"):
            raise RuntimeError("server did not start: %s" % line)
        raw = os.path.join(work, "raw.pcap")
        iface = spec.get("iface", "lo")
        # A case may narrow the filter to its own addresses (other tests may use loopback).
        dump = procs.start(["tcpdump", "-i", iface, "-U", "-w", raw, spec.get("bpf", "tcp portrange 27017-27019")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        started = time.time()
        clients = []
        for i, c in enumerate(spec["clients"]):
            events = os.path.join(work, "events-%d.json" % i)
            env = dict(os.environ)
            if c.get("src"):
                env["LD_PRELOAD"] = os.path.join(BUILD, "bindsrc.so")
                env["LAB_SRC_ADDR"] = c["src"]
            env.update(c.get("env", {}))
            if c["driver"] in NODE_DIRS:
                env["NODE_PATH"] = os.path.join(NODE_DIRS[c["driver"]], "node_modules")
            if c["driver"] == "mongosh":
                env["LAB_EVENTS"] = events
            keylog = None
            if ca:
                keylog = os.path.join(work, "keylog-%d.txt" % i)
                env["LAB_KEYLOG"] = keylog
                if c["driver"] in OPENSSL_SHIM_DRIVERS:
                    # No key log option in libmongoc or ext-mongodb: the shim writes one.
                    env["LD_PRELOAD"] = " ".join(filter(None, [env.get("LD_PRELOAD"), os.path.join(BUILD, "sslkeylog.so")]))
                    env["SSLKEYLOGFILE"] = keylog
                    env["LAB_TLS_EVENTS"] = os.path.join(work, "tls-events-%d.jsonl" % i)
            # `processes`: the same application started that many times side by side (PHP-FPM
            # workers, each with its own client); their sockets are told apart by the server.
            for p in range(c.get("processes", 1)):
                out = open(os.path.join(work, "client-%d%s.out" % (i, "-%d" % p if p else "")), "w")
                clients.append((procs.start(client_argv(c, seconds, events, ca, keylog), env=env, stdout=out, stderr=subprocess.STDOUT), events))
        for p, _ in clients:
            try:
                p.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                procs.stop(p, signal.SIGKILL)
        time.sleep(0.5)
        procs.stop(dump, signal.SIGINT)
        procs.stop(server, signal.SIGTERM)
    finally:
        procs.stop_all()

    os.makedirs(os.path.join(OUT, name), exist_ok=True)
    capture = "capture.pcapng" if spec.get("pcapng") else "capture.pcap"
    final = os.path.join(OUT, name, capture)
    cut_ts = None
    if spec.get("cut_after"):
        cut_ts = started + spec["cut_after"]
        subprocess.run(["editcap", "-A", "%.6f" % cut_ts, raw, final], check=True)
    elif spec.get("pcapng"):
        subprocess.run(["editcap", "-F", "pcapng", raw, final], check=True)
    else:
        shutil.copy(raw, final)
    if "tls" in spec and not keyless_only(spec):
        with open(os.path.join(OUT, name, "keylog.txt"), "w") as out:
            for i in range(len(spec["clients"])):
                path = os.path.join(work, "keylog-%d.txt" % i)
                if os.path.exists(path):
                    out.write(open(path).read())
    with open(os.path.join(work, "meta.json"), "w") as f:
        json.dump(dict(capture=capture, cut_ts=cut_ts, clients=len(clients)), f)
    return write_truth(name, spec, work, capture, cut_ts, final)


def write_truth(name, spec, work, capture, cut_ts, final):
    """Derive and write a case's truth from the records of its run in `work`."""
    server_log = os.path.join(work, "server.log")
    events = []
    for i in range(len(spec["clients"])):
        try:
            evs = json.load(open(os.path.join(work, "events-%d.json" % i)))
        except (OSError, ValueError):
            evs = []
        evs = evs + shim_tls_events(os.path.join(work, "tls-events-%d.jsonl" % i), os.path.join(work, "raw.pcap"))
        if "tls" in spec and spec["clients"][i]["driver"] in SERVER_HELLO_TLS_DRIVERS:
            evs = evs + server_hello_tls_events(os.path.join(work, "raw.pcap"), spec["clients"][i].get("src", "127.0.0.1"))
        events.append(evs)
    present = endpoints_in(final) if cut_ts else None
    truth, summary = derive_truth(name, spec, server_log, events, capture, cut_ts, present)
    restarts = read_restarts(server_log)
    if restarts:
        # Attempts while a member is down never become connections: the report counts
        # them per node instead of listing them.
        truth["server"]["restarts"] = restarts
        truth["server"]["refused_attempts"] = dict(refused_attempts_in(final))
    stepdowns = [dict(at=e["ts"], old=e["old"], new=e["new"])
                 for e in map(json.loads, open(server_log)) if e["event"] == "stepdown"]
    if stepdowns:
        truth["server"]["stepdowns"] = stepdowns
    backends = read_backends(server_log)
    if backends:
        # Several processes answering at one address (--backends): not restarts.
        truth["server"]["backends"] = backends
    with open(os.path.join(OUT, name, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    with open(os.path.join(OUT, name, "server-connections.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return truth


def shim_tls_events(path, capture):
    """The sslkeylog.so shim's records of one client process, as `tls` events: what OpenSSL
    negotiated for each session (from the keylog callback) joined by client random to the
    socket whose ClientHello carried that random. The shim sees the ClientHello leave the
    socket where the driver's socket calls reach it (libmongoc); PHP loads its extensions
    with RTLD_DEEPBIND, so ext-mongodb's bundled libmongoc calls libc directly and the
    ClientHello is found in the capture instead (tshark's dissector, not conn-attrib).
    Where both exist they must agree."""
    if not os.path.exists(path):
        return []
    keys, local = {}, {}
    for line in open(path):
        e = json.loads(line)
        if e["kind"] == "tls-keys":
            keys[e["client_random"]] = e
        elif e["kind"] == "tls-hello":
            local[e["client_random"]] = e["local"]
    on_wire = client_hellos_in(capture)
    events = []
    for r, k in keys.items():
        if r in local and r in on_wire and local[r] != on_wire[r]:
            raise RuntimeError("%s: the session %s... left %s but its ClientHello is on %s in the capture" % (path, r[:16], local[r], on_wire[r]))
        where = local.get(r) or on_wire.get(r)
        if where is None:
            raise RuntimeError("%s: the session %s... has keys but no ClientHello was seen" % (path, r[:16]))
        events.append(dict(kind="tls", local=where, version=k["version"], cipher=k["cipher"],
                           source="sslkeylog.so shim; socket from the %s" % ("driver's write" if r in local else "capture's ClientHello")))
    return events


# The IANA suites the lab's servers offer, by code point, named as the other truths name them.
SUITES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
          0xC02F: "ECDHE-RSA-AES128-GCM-SHA256", 0xC030: "ECDHE-RSA-AES256-GCM-SHA384", 0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305"}


def server_hello_tls_events(capture, client_host):
    """`tls` events for every connection of one client host from the ServerHellos in a
    capture (tshark's dissector, not conn-attrib): the version (supported_versions, else
    the legacy field) and the suite the server chose for that connection."""
    out = subprocess.run(["tshark", "-r", capture, "-Y", "tls.handshake.type == 2 && ip.dst == %s" % client_host, "-T", "fields",
                          "-e", "ip.dst", "-e", "tcp.dstport", "-e", "tls.handshake.extensions.supported_version",
                          "-e", "tls.handshake.version", "-e", "tls.handshake.ciphersuite"],
                         check=True, capture_output=True, text=True).stdout
    names = {0x0304: "TLSv1.3", 0x0303: "TLSv1.2"}
    events = []
    for f in (line.split("\t") for line in out.splitlines()):
        version = int((f[2] or f[3]).split(",")[0], 16)
        events.append(dict(kind="tls", local="%s:%s" % (f[0], f[1]), version=names[version], cipher=SUITES[int(f[4], 16)],
                           source="the connection's ServerHello in the capture (tshark)"))
    return events


def client_hellos_in(pcap):
    """Client random -> ip:port of every ClientHello in a capture (read with tshark)."""
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "tls.handshake.type == 1", "-T", "fields", "-e", "tls.handshake.random",
                          "-e", "ip.src", "-e", "tcp.srcport"], check=True, capture_output=True, text=True).stdout
    return {f[0]: "%s:%s" % (f[1], f[2]) for f in (line.split("\t") for line in out.splitlines()) if len(f) == 3}


def endpoints_in(pcap):
    """Every ip:port that sends a TCP segment in a capture (read with tshark)."""
    out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "ip.src", "-e", "tcp.srcport"],
                         check=True, capture_output=True, text=True).stdout
    return {"%s:%s" % tuple(line.split("\t")) for line in out.splitlines() if "\t" in line}


def refused_attempts_in(pcap):
    """Server ip:port -> how many connection attempts to it a capture shows refused: a SYN
    the server answered with a RST and never a SYN-ACK (read with tshark)."""
    out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst",
                          "-e", "tcp.dstport", "-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "tcp.flags.reset"],
                         check=True, capture_output=True, text=True).stdout
    on = lambda v: v in ("1", "True")  # tshark prints flags either way, by version
    syn, syn_ack, rst = set(), set(), set()
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) != 7:
            continue
        src, dst = "%s:%s" % (f[0], f[1]), "%s:%s" % (f[2], f[3])
        if on(f[4]) and not on(f[5]):
            syn.add((src, dst))
        elif on(f[4]):
            syn_ack.add((dst, src))
        elif on(f[6]):
            rst.add((dst, src))
    return Counter(server for flow in syn - syn_ack if flow in rst for server in [flow[1]])


def read_restarts(path):
    """The members the test server restarted (--restart-member): when each went down and
    came back."""
    restarts = {}
    for line in open(path):
        e = json.loads(line)
        if e["event"] == "restart":
            restarts.setdefault(e["member"], {})[e["phase"]] = e["ts"]
    return [dict(member=m, down=r.get("down"), up=r.get("up")) for m, r in sorted(restarts.items())]


def read_backends(path):
    """Per address, how many processes behind it (--backends) accepted a connection."""
    seen = {}
    for line in open(path):
        e = json.loads(line)
        if e["event"] == "accept" and "backend" in e:
            seen.setdefault(e["local"], set()).add(e["backend"])
    return {local: len(b) for local, b in sorted(seen.items())}


def read_internal(path):
    """The test server's own outgoing connections (--emulate-members): local address →
    what it opened it as; plus the reconfigs and dropConnections it logged."""
    opened, reconfigs, drops = {}, [], []
    for line in open(path):
        e = json.loads(line)
        if e["event"] == "internal-open":
            opened[e["local"]] = dict(member=e["member"], target=e["peer"], role=e["role"], closed=None, reason=None)
        elif e["event"] == "internal-close" and e.get("local") in opened:
            opened[e["local"]].update(closed=e["ts"], reason=e["reason"])
        elif e["event"] == "reconfig":
            reconfigs.append(e)
        elif e["event"] == "dropConnections":
            drops.append(e)
    return opened, reconfigs, drops


def read_server_log(path):
    conns = {}
    for line in open(path):
        e = json.loads(line)
        peer = e.get("peer")
        if e["event"] == "accept":
            conns[peer] = dict(peer=peer, server=e["local"], opened=e["ts"], closed=None, commands=Counter(),
                               hellos=0, awaitable=0, exhaust=0, ops=0, auth=0, client=None, load_balanced=False)
        elif peer in conns:
            c = conns[peer]
            if e["event"] == "close":
                c["closed"] = e["ts"]
            elif e["event"] == "command":
                cmd = e["cmd"]
                c["commands"][cmd] += 1
                if cmd in ("hello", "isMaster", "ismaster"):
                    c["hellos"] += 1
                    c["awaitable"] += e.get("awaitable", False)
                    c["exhaust"] += e.get("exhaust", False)
                    if c["client"] is None and e.get("client"):
                        c["client"] = e["client"]
                    c["load_balanced"] |= bool(e.get("load_balanced"))
                elif cmd in ("saslStart", "saslContinue"):
                    c["auth"] += 1
                elif cmd not in ("endSessions",):
                    c["ops"] += 1
    return conns


def client_key(host, meta):
    meta = meta or {}
    app = (meta.get("application") or {}).get("name", "")
    drv = dict(meta.get("driver") or {})
    # PyMongo's AsyncMongoClient names its pool connections "PyMongo|c|async" (version
    # "4.20.1||") but its monitors "PyMongo|c" (their pools get the sync defaults): one
    # MongoClient, keyed without the "async" part, as the report keys it.
    names, versions = drv.get("name", "").split("|"), drv.get("version", "").split("|")
    if names[0] == "PyMongo" and "async" in names:
        at = names.index("async")
        del names[at]
        if at < len(versions) and versions[at] == "":
            del versions[at]
        drv.update(name="|".join(names), version="|".join(versions))
    # As the report keys it: the handshake's strings verbatim (ext-mongodb's end in a space),
    # "name version", the name alone, or nothing for a driver that sends no metadata (mgo).
    name, version = drv.get("name"), drv.get("version")
    driver = "%s %s" % (name, version) if name and version is not None else (name or "")
    return "%s|%s|%s" % (host, app, driver)


def derive_truth(name, spec, server_log, events, capture, cut_ts, present=None):
    conns = read_server_log(server_log)
    internal, reconfigs, drops = read_internal(server_log)
    removed = {r["removed"] for r in reconfigs}
    # Which driver opened which socket, from the client-side records.
    opened_by = {}
    tls_of = {}
    for i, evs in enumerate(events):
        for e in evs:
            if e.get("kind") == "socket":
                opened_by[e["local"]] = (i, e.get("thread") or "", e.get("stack") or "")
            if e.get("kind") == "tls" or (e.get("kind") == "socket" and e.get("tls")):
                tls_of[e["local"]] = dict(version=e.get("version") or e.get("tls"), cipher=e["cipher"])
    cmap = Counter()
    for evs in events:
        for e in evs:
            if e.get("kind") == "cmap-created":
                cmap[e["address"]] += 1

    # Clients of the case by source host (each case gives each driver its own address or appName).
    spec_by_app = {}
    for i, c in enumerate(spec["clients"]):
        if "appName=" in c["uri"]:
            spec_by_app[c["uri"].split("appName=")[1].split("&")[0]] = (i, c)

    def spec_for(meta):
        """The case's client a handshake's metadata names: by appName, or, for a client
        told none, by its driver's name."""
        app = ((meta or {}).get("application") or {}).get("name")
        if app in spec_by_app:
            return spec_by_app[app]
        name = ((meta or {}).get("driver") or {}).get("name", "")
        for i, c in enumerate(spec["clients"]):
            if "appName=" not in c["uri"] and DRIVER_NAMES.get(c["driver"], "\0") in name:
                return (i, c)
        return (None, spec["clients"][0])

    truth_conns = []
    metas = {}
    streaming_nodes = defaultdict(set)
    for peer, c in conns.items():
        if c["awaitable"]:
            streaming_nodes[(peer.rsplit(":", 1)[0], (c["client"] or {}).get("application", {}).get("name"))].add(c["server"])
    # Connections opened by the same process share its handshake metadata; connections of
    # a process whose first hello was not logged borrow the key of their driver: a socket
    # the client's records name (the Ruby driver's resolver probe sends no hello) takes
    # the metadata of its process's other connections.
    meta_of_process = {}
    for peer, c in conns.items():
        if c["client"] and peer in opened_by:
            meta_of_process.setdefault(opened_by[peer][0], c["client"])
    for peer, c in sorted(conns.items(), key=lambda kv: kv[1]["opened"]):
        host = peer.rsplit(":", 1)[0]
        meta = c["client"] or meta_of_process.get(opened_by.get(peer, (None,))[0])
        app = ((meta or {}).get("application") or {}).get("name")
        idx, cspec = spec_for(meta)
        driver = cspec["driver"]
        role, why = None, ""
        ob = opened_by.get(peer)
        lb = c["load_balanced"]
        sub_role = member = None
        stale = False
        if peer in internal:
            # Opened by the server's emulation of a member: it knows what for.
            i = internal[peer]
            role, sub_role, member = "internal", i["role"], i["member"]
            stale = i["target"] in removed and i["closed"] is None and i["member"] not in removed
            why = "opened by the test server as member %s's %s connection to %s (internal handshake with internalClient)%s" % (
                i["member"], i["role"], i["target"], "; closed: %s" % i["reason"] if i["reason"] else "; open at the end")
        elif lb:
            role, why = "pool", "loadBalanced handshake (server log): load-balanced clients have no monitors"
        elif driver in ("mongoc-single", "php", "perl"):
            role, why = "single-threaded", ("libmongoc" if driver != "perl" else "The Perl driver's") + " single-threaded design: the only connection to %s, carrying hello checks (%d) and operations (%d) per the server log" % (c["server"], c["hellos"], c["ops"])
        elif ob and driver.startswith("pymongo") and not cspec.get("async"):
            # (AsyncMongoClient connects in a child task of asyncio.wait_for, named
            # "Task-N": its sockets fall to the server-log rules below.)
            thread = ob[1]
            if "rtt" in thread:
                role = "rtt-monitor"
            elif "monitor" in thread:
                role = "streaming-monitor" if c["awaitable"] else "polling-monitor"
            else:
                role = "pool"
            why = "socket opened by PyMongo thread %s; server log: %d hellos (%d awaitable), %d operations, %d auth commands" % (thread, c["hellos"], c["awaitable"], c["ops"], c["auth"])
        elif ob and driver in NODE_DIRS:
            stack = ob[2]
            if "RTTPinger" in stack or "measureRoundTripTime" in stack or "RTT" in stack:
                role = "rtt-monitor"
            elif "Monitor" in stack or "monitor" in stack:
                role = "streaming-monitor" if c["awaitable"] else "polling-monitor"
            elif "ConnectionPool" in stack or "pool" in stack:
                role = "pool"
            why = "socket opened from %s; server log: %d hellos (%d awaitable), %d operations" % (
                (stack.split(" | ")[0] if stack else "unknown frame"), c["hellos"], c["awaitable"], c["ops"])
        elif ob and driver == "java":
            # The Java driver's monitor threads are named "cluster-<ClusterId>-<host:port>";
            # pool connections are opened on the application's threads or the pool's
            # maintenance timer.
            thread = ob[1]
            if thread.startswith("cluster-"):
                role = "streaming-monitor" if c["awaitable"] else "polling-monitor"
            else:
                role = "pool"
            why = "socket connected on Java thread %s; server log: %d hellos (%d awaitable), %d operations" % (
                thread.split("ClusterId")[0] + "..." if thread.startswith("cluster-") else thread, c["hellos"], c["awaitable"], c["ops"])
        elif ob and driver == "ruby":
            # The Ruby driver 2.5 connects every socket on the thread that needs it; the
            # call stack names what for: the monitor's own connection (Monitor::Connection),
            # a pool connection (Server::Connection), or, before either, the address
            # resolver's probe (Address#initialize_resolver! connects once per address to
            # learn its family, then closes the socket without a byte sent).
            stack = ob[2]
            if "initialize_resolver!" in stack:
                role = "unknown"
            elif "mongo/server/monitor/" in stack:
                role = "streaming-monitor" if c["awaitable"] else "polling-monitor"
            elif "mongo/server/connection.rb" in stack:
                role = "pool"
            frame = next((f for f in stack.split(" | ") if "initialize_resolver!" in f or "mongo/server/" in f), "unknown frame")
            why = "socket connected from %s; server log: %d hellos (%d awaitable), %d operations" % (frame, c["hellos"], c["awaitable"], c["ops"])
        elif ob and driver == "mgo":
            # mgo has no monitoring connections: its cluster syncs each server (ismaster,
            # every 30 s) over a socket of that server's pool, which sessions also run
            # operations on. Every socket is a pool socket, whoever dialled it first.
            stack = ob[2]
            role = "pool"
            frame = next((f for f in stack.split(" | ") if "syncServer" in f or "AcquireSocket" in f), "unknown frame")
            why = "mgo design (no monitors; checks ride on pool sockets); socket dialled from %s; server log: %d hellos, %d operations" % (
                frame.split("(0x")[0].split("(...")[0].rsplit("/", 1)[-1], c["hellos"], c["ops"])
        elif ob and driver == "go":
            # The Go driver dials every socket through the client's dialer, on the goroutine
            # of the code that needs it: Server.update/check (the monitor), rttMonitor, or
            # the pool's connection creation.
            stack = ob[2]
            if "rttMonitor" in stack:
                role = "rtt-monitor"
            elif "(*Server).update" in stack or "(*Server).check" in stack or "setupHeartbeatConnection" in stack:
                role = "streaming-monitor" if c["awaitable"] else "polling-monitor"
            elif "(*pool)" in stack:
                role = "pool"
            frame = next((f for f in stack.split(" | ") if any(k in f for k in ("rttMonitor", "(*Server).", "(*pool)."))), "unknown frame")
            why = "socket dialled from %s; server log: %d hellos (%d awaitable), %d operations" % (
                frame.split("(0x")[0].split("(...")[0].rsplit("/", 1)[-1], c["hellos"], c["awaitable"], c["ops"])
        if role is None:
            # Server-log rules, with the driver's design: monitors never run operations
            # or authenticate; the streaming monitor is the one with awaitable hellos.
            key = (host, app)
            if c["awaitable"]:
                role = "streaming-monitor"
            elif c["ops"] or c["auth"]:
                role = "pool"
            elif c["hellos"] >= 2:
                role = "rtt-monitor" if c["server"] in streaming_nodes.get(key, ()) else "polling-monitor"
            else:
                role = "pool"
            why = (why + "; " if why else "") + "server log: %d hellos (%d awaitable), %d operations, %d auth commands" % (c["hellos"], c["awaitable"], c["ops"], c["auth"])
        if cut_ts and c["closed"] and c["closed"] < cut_ts:
            continue  # gone before the kept window
        if present is not None and peer not in present:
            continue  # silent during the kept window: not in the capture at all
        if role in ("streaming-monitor", "rtt-monitor", "polling-monitor") and c["server"] in removed:
            # A client still monitoring the removed member: its monitor stayed open more
            # than two heartbeats (2 s in this lab) after the reconfig, when a driver that
            # follows the primary's host list closes it at its next check.
            reconfig_ts = min(r["ts"] for r in reconfigs)
            stale = c["closed"] is None or c["closed"] - reconfig_ts > 2 * 2.0
        metas.setdefault(client_key(host, meta), meta)
        entry = dict(
            client=peer, server=c["server"], role=role, client_key=client_key(host, meta),
            opened_before_capture=bool(cut_ts and c["opened"] < cut_ts), derived_from=why)
        if reconfigs or internal:
            entry.update(sub_role=sub_role, member=member, stale=stale)
        if "tls" in spec:
            entry["tls"] = tls_of.get(peer)
        truth_conns.append(entry)

    # Per client: what the driver was told, and what it did.
    clients = []
    by_key = defaultdict(list)
    for t in truth_conns:
        by_key[t["client_key"]].append(t)
    for key, members in sorted(by_key.items()):
        app = key.split("|")[1]
        _, cspec = spec_for(metas.get(key))
        counts = Counter(t["role"] for t in members)
        nodes = sorted({t["server"] for t in members})
        instances = cspec.get("instances", 1) * cspec.get("processes", 1)
        mp = cspec.get("min_pool_size", 0)
        if any(t["role"] == "pool" for t in members) and all(t["role"] == "pool" for t in members) and "loadBalanced" in cspec["uri"]:
            mode, per_node, formula = "load-balanced", mp, "minPoolSize x load balancers"
        elif counts["streaming-monitor"]:
            mode, per_node, formula = "streaming", mp + 2, "(minPoolSize + 2) x nodes"
        elif counts["polling-monitor"] and counts["rtt-monitor"]:
            # The driver keeps an RTT connection beside each polling monitor (Go 1.4-1.12).
            mode, per_node, formula = "polling", mp + 2, "(minPoolSize + 2) x nodes"
        elif counts["polling-monitor"]:
            mode, per_node, formula = "polling", mp + 1, "(minPoolSize + 1) x nodes"
        elif counts["single-threaded"]:
            mode, per_node, formula = "single-threaded", 1, "1 x nodes"
        else:
            mode, per_node, formula = "unknown", 0, ""
        monitored = sorted({t["server"] for t in members if t["role"] in ("streaming-monitor", "polling-monitor", "single-threaded")}) or nodes
        expected_total = per_node * len(monitored) * instances
        total = len(members)
        notes = []
        if total != expected_total:
            pool_by_node = Counter(t["server"] for t in members if t["role"] == "pool")
            for n, k in sorted(pool_by_node.items()):
                if k > mp * instances:
                    notes.append("%d pool connections to %s over the capture vs minPoolSize %d%s: the pool grew under concurrent operations or connections were replaced" % (k, n, mp, " x %d instances" % instances if instances > 1 else ""))
            for n in monitored:
                if mp * instances > pool_by_node.get(n, 0) and mode in ("streaming", "polling"):
                    notes.append("%s holds %d pool connections, fewer than minPoolSize %d: the driver had not finished filling the pool, or closed connections" % (n, pool_by_node.get(n, 0), mp))
        if cut_ts:
            notes.append("the capture keeps only the last part of the session: connections opened before it show no handshake, and idle pool connections that sent nothing in the kept window are not in the capture")
        drv = (metas.get(key) or {}).get("driver") or {}
        clients.append(dict(
            key=key, host=key.split("|")[0], app_name=app or None,
            driver=dict(name=drv.get("name", ""), version=drv.get("version", "")),
            mode=mode, mongo_clients=instances, nodes=nodes, min_pool_size=mp,
            counts=dict(counts, total=total),
            expected=dict(formula=formula, per_node=per_node, total=expected_total),
            notes="; ".join(notes)))
    truth = dict(
        case=name, description=spec["what"], capture=capture,
        server=dict(topology=next((spec["server"][i + 1] for i, a in enumerate(spec.get("server", [])) if a == "--topology"), "replset"),
                    mode="legacy-42" if "--legacy-42" in spec.get("server", []) else "modern",
                    nodes=sorted({c["server"] for c in conns.values()})),
        drivers=[dict(driver=c["driver"], uri=c["uri"].replace("lab-pass", "***")) for c in spec["clients"]],
        connections=truth_conns, clients=clients,
        **(dict(keylog=None if keyless_only(spec) else "keylog.txt",
                tls=dict(max_version=spec["tls"].get("max_version", "1.3"), server_ciphers=spec["tls"].get("ciphers"))) if "tls" in spec else {}),
        **(dict(plaintext_twin=spec["plaintext_twin"]) if "plaintext_twin" in spec else {}),
        **(dict(cluster=dict(
            reconfigs=[dict(set_version=r["version"], hosts=r["hosts"], removed=r["removed"]) for r in reconfigs],
            drop_connections=[dict(member=d["local"], targets=d["targets"], dropped=d["dropped"]) for d in drops],
            derivation="membership from the server's reconfig log; stale = internal connections to the removed member still open at the end (the server only closes them on a dropConnections naming host:port), and client monitors of the removed member that stayed open more than two heartbeats after the reconfig")) if (reconfigs or internal) else {}),
        derivation="Roles per connection from the driver side where it names them (PyMongo thread names, Node.js call stacks at socket creation) and the test server's log of each connection's commands; libmongoc/PHP single-threaded by design confirmed by the log; per-client expectations from the settings the case gave the driver (minPoolSize, MongoClient instances).",
    )
    summary = [dict(peer=c["peer"], server=c["server"], opened=c["opened"], closed=c["closed"], commands=dict(c["commands"]),
                    client=client_key(c["peer"].rsplit(":", 1)[0], c["client"])) for c in sorted(conns.values(), key=lambda c: c["opened"])]
    return truth, summary


def write_readme():
    """testdata/lab/README.md: one row per recorded case, from its truth file."""
    rows = []
    for name in CASES:
        path = os.path.join(OUT, name, "truth.json")
        if not os.path.exists(path):
            continue
        t = json.load(open(path))
        drivers = sorted({"%s %s" % (c["driver"]["name"], c["driver"]["version"]) for c in t["clients"]})
        totals = "; ".join("%s: %s, %d conn (expected %d = %s)" % (c["app_name"], c["mode"], c["counts"]["total"], c["expected"]["total"], c["expected"]["formula"] or "-") for c in t["clients"])
        cell = lambda text: text.replace("|", "\\|")  # driver names contain '|' (PyMongo|c)
        rows.append("| `%s` | %s | %s | %s |" % (name, cell(", ".join(drivers)), cell(t["description"]), cell(totals)))
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("""# The capture lab's recordings

Real, unmodified drivers against the project's wire-protocol test server
(`scripts/lab/mongo_test_server.py`), recorded with tcpdump on loopback. Regenerate with
`scripts/lab/record-all.sh [CASE ...]`. Each folder holds the capture, `truth.json` (role of
every connection, per-client mode, MongoClient instances, expected totals, and how each was
derived) and `server-connections.json` (the test server's log per connection). Truth comes
from the drivers (thread names, call stacks, CMAP/SDAM events) and the server's log, never
from conn-attrib; `tests/lab.rs` asserts conn-attrib against it.

| case | drivers | what it shows | clients: mode, connections (expected) |
|---|---|---|---|
""")
        f.write("\n".join(rows) + "\n")


def rederive(names):
    """Recompute truth files from the records of earlier runs (no new recording)."""
    for n in names:
        work = os.path.join(WORK, n)
        meta = json.load(open(os.path.join(work, "meta.json")))
        final = os.path.join(OUT, n, meta["capture"])
        truth = write_truth(n, CASES[n], work, meta["capture"], meta["cut_ts"], final)
        print("%-20s rederived: %d connections" % (n, len(truth["connections"])))
    write_readme()


def main():
    if sys.argv[1:2] == ["--rederive"]:
        return rederive(sys.argv[2:] or list(CASES))
    names = sys.argv[1:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit("unknown case(s): %s; known: %s" % (", ".join(unknown), ", ".join(CASES)))
    for n in names:
        t0 = time.time()
        truth = run_case(n, CASES[n])
        print("%-20s %5.1fs  %d connections  %s" % (n, time.time() - t0, len(truth["connections"]),
              "; ".join("%s %s %s" % (c["key"], c["mode"], c["counts"]) for c in truth["clients"])), flush=True)
    write_readme()


if __name__ == "__main__":
    main()
