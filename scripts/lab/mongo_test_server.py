#!/usr/bin/env python3
"""A MongoDB wire-protocol test server for the capture lab.

Real, unmodified drivers connect to it over loopback while tcpdump records. It plays a
replica set (one listener per member), a standalone, a mongos, or a mongos behind a load
balancer, in modern mode (wire 21: topologyVersion, awaitable hello, exhaust streaming)
or legacy 4.2 mode (wire 8: drivers must poll). It answers enough commands for drivers to
work, authenticates SCRAM-SHA-256 for real, negotiates compression, and logs every
connection and command as JSON lines: the server-side half of each case's truth.

With --tls-cert/--tls-key it serves TLS only (as a mongod with tlsMode requireTLS), optionally
capped at TLS 1.2 and restricted to given TLS 1.2 cipher suites, so the lab can record
encrypted traffic together with the clients' key logs.
With --emulate-members it also plays the members' own outgoing connections, as real
mongod processes open them (see Outgoing): heartbeats between all members, each
secondary's oplog fetcher and replSetUpdatePosition reporter to the primary. With
--remove-member HOST --remove-at S, that member is removed at S seconds: setVersion is
bumped, hello replies list the remaining hosts, the removed member answers like a mongod
without a config, and the other members' connections to it stay open (idle) until a
dropConnections naming it (host:port; an element without a port is ignored, as real
servers do) closes them. With --restart-member HOST --restart-at S --restart-down D, that
member stops at S seconds (its clients' sockets closed, new connections refused) and
comes back D seconds later as a new process (a new topologyVersion.processId). With
--stepdown-at S the primary steps down at S seconds and the next member is elected (4.2+:
no connection closed). With
--backends N (mongos, load-balanced), N processes answer at each address, connections
going to each in turn, as behind an L4 load balancer in front of several mongos. With
--proxy HOST:PORT (replset), one more address passes each new connection to the next
member in turn, as a Kubernetes Service or TCP proxy in front of a whole replica set does:
each connection through it answers as the member it reached (its role, "me", processId).

Bounded: it exits by itself after --max-seconds.
"""
import argparse
import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import os
import ssl
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bsonlite as bson  # noqa: E402

OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG = 1, 2004, 2012, 2013
MORE_TO_COME, EXHAUST_ALLOWED, CHECKSUM = 1 << 1, 1 << 16, 1 << 0
HELLO_NAMES = ("hello", "isMaster", "ismaster")
# Never compressed, per the compression spec.
UNCOMPRESSIBLE = set(HELLO_NAMES) | {"saslStart", "saslContinue", "getnonce", "authenticate",
                                     "createUser", "updateUser", "copydbSaslStart", "copydbgetnonce", "copydb"}

try:
    import snappy  # python-snappy
except ImportError:  # pragma: no cover
    snappy = None
try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

COMPRESSORS = {1: "snappy", 2: "zlib", 3: "zstd"}
COMPRESSOR_IDS = {v: k for k, v in COMPRESSORS.items()}


def available_compressors():
    out = []
    if snappy:
        out.append("snappy")
    out.append("zlib")
    if zstandard:
        out.append("zstd")
    return out


def decompress(cid, data):
    if cid == 0:
        return data
    if cid == 1:
        return snappy.uncompress(data)
    if cid == 2:
        return zlib.decompress(data)
    if cid == 3:
        return zstandard.ZstdDecompressor().decompress(data)
    raise ValueError("compressor %d" % cid)


def compress(cid, data):
    if cid == 1:
        return snappy.compress(data)
    if cid == 2:
        return zlib.compress(data)
    if cid == 3:
        return zstandard.ZstdCompressor().compress(data)
    return data


class Log:
    def __init__(self, path):
        self.f = open(path, "a") if path else None

    def write(self, **event):
        if self.f:
            event["ts"] = round(time.time(), 6)
            self.f.write(json.dumps(event, default=str) + "\n")
            self.f.flush()


# SCRAM-SHA-256 (RFC 5802 / RFC 7677) with the lab's one user.
USERS = {"lab": "lab-pass"}
ITERATIONS = 4096


def scram_keys(password, salt):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


class Scram:
    SALT = b"conn-attrib-lab-salt"

    def __init__(self):
        self.user = None
        self.client_first_bare = None
        self.server_first = None
        self.nonce = None

    def start(self, payload):
        msg = payload.decode()
        # gs2 header "n,," then client-first-bare "n=user,r=nonce"
        bare = msg.split(",", 2)[2]
        fields = dict(p.split("=", 1) for p in bare.split(","))
        self.user = fields["n"]
        self.client_first_bare = bare
        self.nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
        self.server_first = "r=%s,s=%s,i=%d" % (self.nonce, base64.b64encode(self.SALT).decode(), ITERATIONS)
        return self.server_first.encode()

    def finish(self, payload):
        msg = payload.decode()
        without_proof, proof = msg.rsplit(",p=", 1)
        fields = dict(p.split("=", 1) for p in without_proof.split(","))
        if fields.get("r") != self.nonce or self.user not in USERS:
            return None
        stored_key, server_key = scram_keys(USERS[self.user], self.SALT)
        auth_message = ",".join([self.client_first_bare, self.server_first, without_proof]).encode()
        client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), client_sig))
        if hashlib.sha256(client_key).digest() != stored_key:
            return None
        server_sig = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return ("v=" + base64.b64encode(server_sig).decode()).encode()


class Member:
    """One listening server process (a replica-set member, standalone, mongos or LB)."""

    def __init__(self, args, host, port, all_hosts, index):
        self.args = args
        self.host, self.port = host, port
        self.name = "%s:%d" % (host, port)
        self.all_hosts = all_hosts
        self.primary = index == 0
        self.process_id = bson.ObjectId()
        # --backends: the processes behind this address, one per accepted connection in
        # turn, as an L4 load balancer spreads connections over several mongos.
        self.backends = [self.process_id] + [bson.ObjectId() for _ in range(args.backends - 1)]
        self.counter = 0
        self.next_request_id = 1000 * (index + 1)
        self.next_conn_id = 1
        self.store = {}
        self.index = index
        self.outgoing = []  # Outgoing connections this member opened
        self.incoming = set()  # Connections accepted and still open
        self.server = None  # the listener (asyncio.Server)
        self.cursor_id = 7000 + index

    def request_id(self):
        self.next_request_id += 1
        return self.next_request_id

    def hello_reply(self, cmd, state):
        legacy = self.args.legacy_42
        name = next((k for k in cmd if k in HELLO_NAMES), "hello")
        reply = {}
        if name == "hello" or cmd.get("helloOk"):
            reply["helloOk"] = True
        writable_key = "isWritablePrimary" if name == "hello" else "ismaster"
        topology = self.args.topology
        config = self.args.config
        if topology == "replset" and self.name in config["removed"]:
            # A removed member has no valid config: mongod answers hello without the
            # set's fields (isreplicaset, "Does not have a valid replica set config").
            reply[writable_key] = False
            reply["secondary"] = False
            reply["isreplicaset"] = True
            reply["info"] = "Does not have a valid replica set config"
        elif topology == "replset":
            reply[writable_key] = self.primary
            reply["secondary"] = not self.primary
            reply["setName"] = self.args.set_name
            reply["setVersion"] = config["version"]
            reply["hosts"] = list(config["hosts"])
            reply["primary"] = config.get("primary", config["hosts"][0])
            reply["me"] = self.name
        else:
            reply[writable_key] = True
        if topology in ("mongos", "load-balanced"):
            reply["msg"] = "isdbgrid"
        process_id = state.get("process_id", self.process_id)
        if topology == "load-balanced" and cmd.get("loadBalanced"):
            reply["serviceId"] = process_id
        if not legacy:
            reply["topologyVersion"] = {"processId": process_id, "counter": bson.Int64(self.counter)}
        reply.update({
            "maxBsonObjectSize": 16777216,
            "maxMessageSizeBytes": 48000000,
            "maxWriteBatchSize": 100000,
            "localTime": datetime.datetime.now(datetime.timezone.utc),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": state["conn_id"],
            "minWireVersion": 0,
            "maxWireVersion": 8 if legacy else 21,
            "readOnly": False,
        })
        offered = cmd.get("compression")
        if isinstance(offered, list):
            ours = self.args.compressors
            reply["compression"] = [c for c in offered if c in ours]
        mechs = cmd.get("saslSupportedMechs")
        if isinstance(mechs, str) and mechs.split(".", 1)[-1] in USERS:
            reply["saslSupportedMechs"] = ["SCRAM-SHA-256"]
        reply["ok"] = 1.0
        return reply

    def run_command(self, cmd, state):
        """Answer a non-hello command; returns the reply document."""
        name = next(iter(cmd), "")
        db = cmd.get("$db", "admin")
        if name in ("ping", "endSessions", "killCursors", "getParameter", "setParameter", "logout"):
            return {"ok": 1.0}
        if name == "getnonce":
            # MONGODB-CR's nonce: a 4.2 server still answers it (old drivers such as mgo ask
            # for it on every new socket); 6.0 removed the command.
            if self.args.legacy_42:
                return {"nonce": os.urandom(8).hex(), "ok": 1.0}
            return {"ok": 0.0, "errmsg": "no such command: 'getnonce'", "code": 59, "codeName": "CommandNotFound"}
        if name in ("buildInfo", "buildinfo"):
            version = "4.2.25" if self.args.legacy_42 else "7.0.14"
            return {"version": version, "versionArray": [int(x) for x in version.split(".")] + [0], "ok": 1.0}
        if name == "saslStart":
            if cmd.get("mechanism") != "SCRAM-SHA-256":
                return {"ok": 0.0, "errmsg": "mechanism not supported", "code": 334}
            state["scram"] = Scram()
            payload = state["scram"].start(cmd["payload"].data)
            return {"conversationId": 1, "done": False, "payload": bson.Binary(payload), "ok": 1.0}
        if name == "saslContinue":
            scram = state.get("scram")
            if scram is None:
                return {"ok": 0.0, "errmsg": "no conversation", "code": 17}
            if scram.user is None:
                return {"conversationId": 1, "done": True, "payload": bson.Binary(b""), "ok": 1.0}
            if state.get("scram_done"):
                return {"conversationId": 1, "done": True, "payload": bson.Binary(b""), "ok": 1.0}
            final = scram.finish(cmd["payload"].data)
            if final is None:
                return {"ok": 0.0, "errmsg": "Authentication failed.", "code": 18, "codeName": "AuthenticationFailed"}
            state["scram_done"] = True
            state["user"] = scram.user
            return {"conversationId": 1, "done": True, "payload": bson.Binary(final), "ok": 1.0}
        if name == "replSetHeartbeat":
            if self.name in self.args.config["removed"]:
                return {"ok": 0.0, "errmsg": "Our replica set config is invalid or we are not a member of it",
                        "code": 93, "codeName": "InvalidReplicaSetConfig"}
            return {"ok": 1.0, "set": self.args.set_name, "v": self.args.config["version"], "configVersion": self.args.config["version"],
                    "configTerm": bson.Int64(1), "term": bson.Int64(1), "state": 1 if self.primary else 2,
                    "syncingTo": "" if self.primary else self.args.config["hosts"][0]}
        if name == "replSetUpdatePosition":
            return {"ok": 1.0}
        if name == "dropConnections":
            # drop_connections_command.cpp: drops this process's outgoing pooled connections
            # to each hostAndPort; an element without host and port names nothing.
            dropped = []
            for target in cmd.get("hostAndPort") or []:
                if isinstance(target, str) and ":" in target and target.rsplit(":", 1)[1].isdigit():
                    dropped += self.drop_outgoing(target)
            self.args.log.write(event="dropConnections", local=self.name, targets=cmd.get("hostAndPort"), dropped=dropped)
            return {"ok": 1.0}
        if db == "local" and cmd.get(name) == "oplog.rs" and name == "find":
            return {"cursor": {"firstBatch": [], "id": bson.Int64(self.cursor_id), "ns": "local.oplog.rs"}, "ok": 1.0}
        if db == "local" and name == "getMore" and cmd.get("collection") == "oplog.rs":
            return "await-oplog"
        coll = cmd.get(name) if isinstance(cmd.get(name), str) else "c"
        ns = "%s.%s" % (db, coll)
        if name == "insert":
            docs = list(cmd.get("documents") or []) + list(state.get("sequence", {}).get("documents", []))
            self.store.setdefault(ns, []).extend(docs)
            return {"n": len(docs), "ok": 1.0}
        if name in ("find", "aggregate"):
            docs = self.store.get(ns, [])[: int(cmd.get("limit") or 101)]
            return {"cursor": {"firstBatch": docs, "id": bson.Int64(0), "ns": ns}, "ok": 1.0}
        if name == "getMore":
            return {"cursor": {"nextBatch": [], "id": bson.Int64(0), "ns": ns}, "ok": 1.0}
        if name in ("update", "delete"):
            n = len(cmd.get("updates") or cmd.get("deletes") or []) + len(state.get("sequence", {}).get("updates", []))
            return {"n": n, "nModified": n, "ok": 1.0} if name == "update" else {"n": n, "ok": 1.0}
        if name in ("count", "countDocuments"):
            return {"n": len(self.store.get(ns, [])), "ok": 1.0}
        return {"ok": 1.0}

    def drop_outgoing(self, target):
        dropped = []
        for out in list(self.outgoing):
            if out.target == target and not out.closed:
                out.close("dropConnections")
                dropped.append(out.local)
        return dropped


class Connection:
    def __init__(self, member, reader, writer, log, via_proxy=False):
        self.m = member
        self.via_proxy = via_proxy
        self.reader, self.writer = reader, writer
        self.log = log
        peer = writer.get_extra_info("peername")
        self.peer = "%s:%d" % (peer[0], peer[1])
        self.state = {"conn_id": member.next_conn_id}
        if len(member.backends) > 1:
            self.state["process_id"] = member.backends[(member.next_conn_id - 1) % len(member.backends)]
        member.next_conn_id += 1
        self.compressor = None  # negotiated name
        self.closed = False
        self.close_logged = False

    def shut(self, reason):
        """Close from the server's side, as a stopping mongod closes its clients' sockets."""
        if self.closed:
            return
        self.closed = True
        self.close_logged = True
        self.log.write(event="close", peer=self.peer, local=self.m.name, reason=reason)
        try:
            self.writer.close()
        except Exception:
            pass

    async def read_message(self):
        header = await self.reader.readexactly(16)
        length, request_id, response_to, opcode = struct.unpack("<iiii", header)
        if length < 16 or length > 48_000_000:
            raise ValueError("bad messageLength %d" % length)
        body = await self.reader.readexactly(length - 16)
        compressor = None
        if opcode == OP_COMPRESSED:
            opcode, size, cid = struct.unpack_from("<iiB", body)
            body = decompress(cid, body[9:])
            compressor = COMPRESSORS.get(cid, "noop")
        return request_id, response_to, opcode, body, compressor

    def parse_msg(self, body):
        (flags,) = struct.unpack_from("<I", body)
        end = len(body) - (4 if flags & CHECKSUM else 0)
        i, cmd, sequences = 4, None, {}
        while i < end:
            kind = body[i]
            i += 1
            if kind == 0:
                cmd, i = bson.decode(body, i)
            else:
                (size,) = struct.unpack_from("<i", body, i)
                stop = i + size
                ident_end = body.index(b"\0", i + 4)
                ident = body[i + 4:ident_end].decode()
                j, docs = ident_end + 1, []
                while j < stop:
                    d, j = bson.decode(body, j)
                    docs.append(d)
                sequences[ident] = docs
                i = stop
        return flags, cmd or {}, sequences

    def frame(self, opcode, response_to, body, compress_with, more_to_come=False):
        request_id = self.m.request_id()
        if compress_with:
            cid = COMPRESSOR_IDS[compress_with]
            payload = compress(cid, body)
            inner = struct.pack("<iiB", opcode, len(body), cid) + payload
            return request_id, struct.pack("<iiii", 16 + len(inner), request_id, response_to, OP_COMPRESSED) + inner
        return request_id, struct.pack("<iiii", 16 + len(body), request_id, response_to, opcode) + body

    def msg_reply(self, response_to, doc, compress_with, more_to_come=False):
        flags = MORE_TO_COME if more_to_come else 0
        body = struct.pack("<I", flags) + b"\0" + bson.encode(doc)
        return self.frame(OP_MSG, response_to, body, compress_with, more_to_come)

    def op_reply(self, response_to, doc):
        body = struct.pack("<iqii", 8, 0, 0, 1) + bson.encode(doc)
        return self.frame(OP_REPLY, response_to, body, None)

    async def serve(self):
        local = self.writer.get_extra_info("sockname")
        backend = self.m.backends.index(self.state["process_id"]) if "process_id" in self.state else None
        if self.via_proxy:
            backend = self.m.index
        self.log.write(event="accept", peer=self.peer, local="%s:%d" % (local[0], local[1]), conn_id=self.state["conn_id"],
                       **({"backend": backend} if backend is not None else {}))
        self.m.incoming.add(self)
        try:
            while True:
                request_id, _, opcode, body, compressor = await self.read_message()
                await self.handle(request_id, opcode, body, compressor)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError, ssl.SSLError):
            pass
        except Exception as e:  # keep serving other connections
            self.log.write(event="error", peer=self.peer, local=self.m.name, error=repr(e))
        finally:
            self.closed = True
            self.m.incoming.discard(self)
            if not self.close_logged:
                self.log.write(event="close", peer=self.peer, local=self.m.name)
            try:
                self.writer.close()
            except Exception:
                pass

    async def handle(self, request_id, opcode, body, compressor):
        if opcode == OP_QUERY:
            (flags,) = struct.unpack_from("<i", body)
            ns_end = body.index(b"\0", 4)
            ns = body[4:ns_end].decode()
            query, _ = bson.decode(body, ns_end + 9)
            if "$query" in query:
                query = query["$query"]
            name = next(iter(query), "")
            self.log.write(event="command", peer=self.peer, local=self.m.name, cmd=name, db=ns.split(".")[0],
                           opcode="OP_QUERY", awaitable=False, exhaust=False, compressor=compressor,
                           client=query.get("client"))
            if name in HELLO_NAMES:
                reply = self.m.hello_reply(query, self.state)
                self.negotiate(reply)
            else:
                reply = self.m.run_command(query, self.state)
            _, data = self.op_reply(request_id, reply)
            self.writer.write(data)
            await self.writer.drain()
            return
        if opcode != OP_MSG:
            self.log.write(event="unsupported-opcode", peer=self.peer, opcode=opcode)
            return
        flags, cmd, sequences = self.parse_msg(body)
        name = next(iter(cmd), "")
        awaitable = name in HELLO_NAMES and "topologyVersion" in cmd and "maxAwaitTimeMS" in cmd and not self.m.args.legacy_42
        exhaust = bool(flags & EXHAUST_ALLOWED) and awaitable
        self.log.write(event="command", peer=self.peer, local=self.m.name, cmd=name, db=cmd.get("$db"),
                       opcode="OP_MSG", awaitable=awaitable, exhaust=exhaust, compressor=compressor,
                       client=cmd.get("client") if name in HELLO_NAMES else None,
                       load_balanced=cmd.get("loadBalanced"))
        reply_compressor = self.compressor if (compressor and name not in UNCOMPRESSIBLE) else None
        if name in HELLO_NAMES:
            if awaitable:
                wait = min(float(cmd.get("maxAwaitTimeMS", 10000)) / 1000.0, 60.0)
                await asyncio.sleep(wait)
                if self.closed:
                    return
            reply = self.m.hello_reply(cmd, self.state)
            self.negotiate(reply)
            if exhaust:
                asyncio.get_running_loop().create_task(self.stream_hellos(request_id, cmd, wait))
                return
        else:
            self.state["sequence"] = sequences
            reply = self.m.run_command(cmd, self.state)
            if reply == "await-oplog":
                # awaitData: hold the getMore for maxTimeMS when no new entry arrives.
                await asyncio.sleep(min(float(cmd.get("maxTimeMS", 1000)), 5000.0) / 1000.0)
                reply = {"cursor": {"nextBatch": [], "id": cmd.get("getMore"), "ns": "local.oplog.rs"}, "ok": 1.0}
        if flags & MORE_TO_COME:
            return  # fire-and-forget request: no reply
        _, data = self.msg_reply(request_id, reply, reply_compressor)
        self.writer.write(data)
        await self.writer.drain()

    def negotiate(self, reply):
        if reply.get("compression") and self.compressor is None:
            self.compressor = reply["compression"][0]

    async def stream_hellos(self, request_id, cmd, wait):
        """Exhaust: answer once, then keep pushing moreToCome replies every wait seconds."""
        response_to = request_id
        streamed = 0
        while not self.closed:
            reply = self.m.hello_reply(cmd, self.state)
            rid, data = self.msg_reply(response_to, reply, None, more_to_come=True)
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                return
            streamed += 1
            response_to = rid
            await asyncio.sleep(wait)


# What a member's outgoing connections send, after the server's own code (mongodb/mongo):
# - handshake: AsyncDBClient::_buildHelloRequest (src/mongo/client/async_client.cpp):
#   `hello: 1`, client metadata whose driver name is the pool's name
#   ("NetworkInterfaceTL-<instance>", network_interface_tl.cpp), compression, and
#   `internalClient: {minWireVersion, maxWireVersion}` (WireSpec::appendInternalClientWireVersion);
# - heartbeats: replSetHeartbeat every heartbeatIntervalMillis (2 s) to every other member,
#   on the replication executor ("ReplNetwork"), with setName, configVersion, from, fromId, term;
# - oplog fetcher: find on local.oplog.rs with tailable, oplogReplay, awaitData, term
#   (oplog_fetcher.cpp makeFindCommandObject), then getMore with maxTimeMS (the awaitData
#   timeout, electionTimeoutMillis / 2) and lastKnownCommittedOpTime;
# - reporter: replSetUpdatePosition with each member's optimes, from the sync-source
#   feedback executor (reporter.cpp, sync_source_feedback.cpp).
ROLES = {
    "replication-heartbeat": "NetworkInterfaceTL-ReplNetwork",
    "oplog-fetcher": "NetworkInterfaceTL-RS",
    "replication-reporter": "NetworkInterfaceTL-ReplCoordExternNetwork",
}
SERVER_VERSION = "7.0.14"


class Outgoing:
    """One connection a member opens to another member, and what it sends."""

    def __init__(self, member, target, role, log):
        self.m, self.target, self.role, self.log = member, target, role, log
        self.local = None
        self.writer = None
        self.closed = False
        self.request_id = 100000 * (member.index + 1)

    def close(self, reason):
        if self.closed:
            return
        self.closed = True
        self.log.write(event="internal-close", local=self.local, member=self.m.name, peer=self.target, role=self.role, reason=reason)
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass

    async def command(self, doc):
        self.request_id += 1
        body = struct.pack("<I", 0) + b"\0" + bson.encode(doc)
        self.writer.write(struct.pack("<iiii", 16 + len(body), self.request_id, 0, OP_MSG) + body)
        await self.writer.drain()
        header = await self.reader.readexactly(16)
        length = struct.unpack("<i", header[:4])[0]
        reply = await self.reader.readexactly(length - 16)
        return bson.decode(reply, 5)[0]

    async def run(self):
        host, port = self.target.rsplit(":", 1)
        try:
            self.reader, self.writer = await asyncio.open_connection(host, int(port), local_addr=(self.m.host, 0))
        except OSError as e:
            self.log.write(event="internal-error", member=self.m.name, peer=self.target, error=repr(e))
            return
        sock = self.writer.get_extra_info("sockname")
        self.local = "%s:%d" % (sock[0], sock[1])
        self.m.outgoing.append(self)
        self.log.write(event="internal-open", local=self.local, member=self.m.name, peer=self.target, role=self.role)
        try:
            await self.command({
                "hello": 1,
                "client": {"driver": {"name": ROLES[self.role], "version": SERVER_VERSION},
                           "os": {"type": "Linux", "name": "Ubuntu", "architecture": "x86_64", "version": "22.04"}},
                "compression": [],
                "internalClient": {"minWireVersion": 21, "maxWireVersion": 21},
                "$db": "admin",
            })
            await getattr(self, self.role.replace("-", "_"))()
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError, OSError):
            pass
        finally:
            self.close("ended")

    def term(self):
        return bson.Int64(1)

    def optime(self):
        return {"ts": bson.Timestamp(int(time.time()), 1), "t": bson.Int64(1)}

    async def replication_heartbeat(self):
        config = self.m.args.config
        while not self.closed:
            if self.target in config["removed"] or self.m.name in config["removed"]:
                # No longer in the config: the executor stops heartbeating it, but its
                # pooled connection stays open, idle, until dropConnections.
                await asyncio.sleep(0.5)
                continue
            await self.command({
                "replSetHeartbeat": self.m.args.set_name, "configVersion": config["version"], "configTerm": bson.Int64(1),
                "hbv": 1, "from": self.m.name, "fromId": self.m.index, "term": self.term(), "$db": "admin",
            })
            await asyncio.sleep(2.0)

    async def oplog_fetcher(self):
        reply = await self.command({
            "find": "oplog.rs", "filter": {"ts": {"$gte": bson.Timestamp(int(time.time()), 1)}},
            "tailable": True, "oplogReplay": True, "awaitData": True, "maxTimeMS": bson.Int64(60000),
            "batchSize": 13981010, "term": self.term(), "readConcern": {"afterClusterTime": bson.Timestamp(int(time.time()), 1)},
            "$db": "local",
        })
        cursor = reply.get("cursor", {}).get("id", bson.Int64(0))
        while not self.closed:
            await self.command({
                "getMore": bson.Int64(cursor), "collection": "oplog.rs", "batchSize": 13981010,
                "maxTimeMS": bson.Int64(5000), "term": self.term(), "lastKnownCommittedOpTime": self.optime(), "$db": "local",
            })

    async def replication_reporter(self):
        while not self.closed:
            await self.command({
                "replSetUpdatePosition": 1,
                "optimes": [{"durableOpTime": self.optime(), "appliedOpTime": self.optime(),
                             "memberId": self.m.index, "cfgver": self.m.args.config["version"]}],
                "$db": "admin",
            })
            await asyncio.sleep(2.5)


async def emulate_members(members, log):
    """Start every member's outgoing connections: heartbeats to all others; from each
    secondary, an oplog fetcher and a reporter to the primary (its sync source)."""
    tasks = []
    primary = members[0]
    for m in members:
        for other in members:
            if other is not m:
                tasks.append(Outgoing(m, other.name, "replication-heartbeat", log))
        if m is not primary:
            tasks.append(Outgoing(m, primary.name, "oplog-fetcher", log))
            tasks.append(Outgoing(m, primary.name, "replication-reporter", log))
    for t in tasks:
        asyncio.get_running_loop().create_task(t.run())
        await asyncio.sleep(0.05)


async def remove_member(members, args, log, name, after):
    """Reconfig without `name`: bump setVersion, shrink hosts; the removed member stops its
    own replication (its outgoing connections close); the others' connections to it stay."""
    await asyncio.sleep(after)
    config = args.config
    config["version"] += 1
    config["hosts"] = [h for h in config["hosts"] if h != name]
    config["removed"].add(name)
    for m in members:
        m.counter += 1  # topologyVersion changes with the config
        if m.name == name:
            for out in list(m.outgoing):
                out.close("member removed")
    log.write(event="reconfig", version=config["version"], hosts=config["hosts"], removed=name)


async def step_down(members, args, log, after):
    """The primary steps down and the next member is elected, as replSetStepDown does on a
    4.2+ server: roles swap, topologyVersion counters move, no connection is closed."""
    await asyncio.sleep(after)
    old = next(m for m in members if m.primary)
    new = members[(members.index(old) + 1) % len(members)]
    old.primary, new.primary = False, True
    args.config["primary"] = new.name
    for m in members:
        m.counter += 1
    log.write(event="stepdown", old=old.name, new=new.name)


async def restart_member(members, args, log, name, after, down, listen):
    """Stop one member as a restart does (listener closed, every client's socket closed,
    connection attempts refused while it is down), then start it again `down` seconds
    later as a new process: a new topologyVersion.processId, the counter from 0."""
    await asyncio.sleep(after)
    m = next(m for m in members if m.name == name)
    m.server.close()
    for conn in list(m.incoming):
        conn.shut("member restarting")
    log.write(event="restart", member=name, phase="down")
    await asyncio.sleep(down)
    m.process_id = bson.ObjectId()
    m.counter = 0
    m.next_conn_id = 1
    m.server = await listen(m)
    log.write(event="restart", member=name, phase="up")


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--topology", choices=["replset", "standalone", "mongos", "load-balanced"], default="replset")
    p.add_argument("--set-name", default="rs0")
    p.add_argument("--hosts", default="127.0.0.11:27017,127.0.0.12:27017,127.0.0.13:27017")
    p.add_argument("--legacy-42", action="store_true", help="maxWireVersion 8: no streaming protocol")
    p.add_argument("--compressors", default=",".join(available_compressors()))
    p.add_argument("--log", help="JSON-lines log of connections and commands")
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS only")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-max-version", choices=["1.2", "1.3"], default="1.3")
    p.add_argument("--tls-ciphers", help="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are not affected)")
    p.add_argument("--tls-client-preference", action="store_true",
                   help="pick the cipher suite by the client's preference (OpenSSL servers, Python's among them, pick by their own by default: AES-256-GCM under TLS 1.3)")
    p.add_argument("--emulate-members", action="store_true", help="open the members' own connections to each other")
    p.add_argument("--remove-member", help="host:port removed from the set at --remove-at seconds")
    p.add_argument("--remove-at", type=float, default=6.0)
    p.add_argument("--restart-member", help="host:port stopped at --restart-at seconds and started again --restart-down seconds later")
    p.add_argument("--restart-at", type=float, default=6.0)
    p.add_argument("--restart-down", type=float, default=4.0)
    p.add_argument("--stepdown-at", type=float, help="seconds after which the primary steps down and the next member becomes primary")
    p.add_argument("--proxy", help="host:port of a TCP proxy passing each connection to the next member in turn (replset)")
    p.add_argument("--backends", type=int, default=1,
                   help="processes behind each address (mongos, load-balanced): connections go to each in turn, each answering with its own topologyVersion.processId and serviceId")
    args = p.parse_args()
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_max_version == "1.2":
            tls.maximum_version = ssl.TLSVersion.TLSv1_2
        if args.tls_ciphers:
            tls.set_ciphers(args.tls_ciphers)
        if args.tls_client_preference:
            tls.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    args.compressors = [c for c in args.compressors.split(",") if c]
    hosts = args.hosts.split(",")
    if args.topology != "replset":
        hosts = hosts[:1] if args.topology != "mongos" else hosts
    log = Log(args.log)
    args.log = log
    args.config = {"version": 1, "hosts": list(hosts), "removed": set()}
    members = []

    async def listen(member):
        def handler(reader, writer):
            return Connection(member, reader, writer, log).serve()

        return await asyncio.start_server(handler, member.host, member.port, reuse_address=True, ssl=tls)

    for i, h in enumerate(hosts):
        host, port = h.rsplit(":", 1)
        member = Member(args, host, int(port), hosts, i)
        members.append(member)
        member.server = await listen(member)
    if args.proxy:
        turn = iter(range(1 << 62))

        def via_proxy(reader, writer):
            member = members[next(turn) % len(members)]
            return Connection(member, reader, writer, log, via_proxy=True).serve()

        proxy_host, proxy_port = args.proxy.rsplit(":", 1)
        await asyncio.start_server(via_proxy, proxy_host, int(proxy_port), reuse_address=True, ssl=tls)
    log.write(event="listening", hosts=hosts, proxy=args.proxy, topology=args.topology, legacy_42=args.legacy_42, backends=args.backends,
              tls=bool(tls), tls_max_version=args.tls_max_version if tls else None)
    print("listening on " + ",".join(hosts), flush=True)
    if args.emulate_members and args.topology == "replset":
        await asyncio.sleep(float(os.environ.get("LAB_EMULATE_DELAY", "2.0")))
        await emulate_members(members, log)
    if args.remove_member:
        asyncio.get_running_loop().create_task(remove_member(members, args, log, args.remove_member, args.remove_at))
    if args.stepdown_at is not None and args.topology == "replset":
        asyncio.get_running_loop().create_task(step_down(members, args, log, args.stepdown_at))
    if args.restart_member:
        asyncio.get_running_loop().create_task(restart_member(
            members, args, log, args.restart_member, args.restart_at, args.restart_down, listen))
    await asyncio.sleep(args.max_seconds)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
