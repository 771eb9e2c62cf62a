#!/usr/bin/env python3
"""Build a large, realistic benchmark capture from the lab's real-driver recordings.

Every lab case (Ethernet pcap) is replayed as many application hosts: each copy gets its
own client addresses (10.H.H.x), the case's servers become 10.0.C.x (one cluster per case,
which all its copies share: the cases' servers are of different kinds, a mongos, a 4.2
member, a load balancer, and one address cannot be all of them), IP and TCP checksums are
fixed incrementally (RFC 1624), timestamps are shifted, and all copies are merged in time
order. Each copy's TCP sequence numbers are offset too (both ends' ISNs, acks and SACK
blocks), so that copies are distinct connections: the same sequence numbers under other
addresses within a second is how conn-attrib recognises one connection seen on both sides
of a NAT. Nothing is held in memory beyond one record per copy.

Usage: make-capture.py OUT.pcap [--copies N] [--busy-copies M] [--spread SECONDS] [--repeat R]
Defaults give ~530 MB, ~2.4 M packets, ~49,000 connections. --repeat R writes R rounds one
after another in time (the same hosts reconnecting later): R times the bytes and
connections with the same number open at once, e.g. --repeat 19 for a ~10 GB capture.
"""
import argparse
import glob
import heapq
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.join(HERE, "..", "..", "testdata", "lab")
HEAVY = "pool-growth"  # the lab case with the most bytes: replayed fewer times


def records(path):
    """(ts_us, frame bytes) of a little- or big-endian µs/ns pcap."""
    with open(path, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        nanos = magic in (0xA1B23C4D, 0x4D3CB2A1)
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        if linktype != 1:
            return
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, caplen, origlen = struct.unpack(endian + "IIII", h)
            data = f.read(caplen)
            if len(data) < caplen:
                return
            us = sec * 1_000_000 + (frac // 1000 if nanos else frac)
            yield us, data


def csum_adjust(checksum, old_words, new_words):
    """RFC 1624 incremental update: HC' = ~(~HC + ~m + m')."""
    s = (~checksum) & 0xFFFF
    for o, n in zip(old_words, new_words):
        s += (~o) & 0xFFFF
        s += n
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def words(addr):
    return struct.unpack("!HH", addr)


def rewrite(frame, copy, cluster):
    """Map 127.0.0.x addresses: servers (11–19) to 10.0.C.x (C: the case's `cluster`),
    clients to 10.H.L.x (H, L: the copy). Between
    two servers (a member or mongos connecting to another) the connecting end, the higher
    port, is mapped as a client: otherwise every copy's intra-cluster connections would
    share one 4-tuple and read as one connection with gaps."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    ihl = (frame[14] & 0x0F) * 4
    f = bytearray(frame)
    old = bytes(f[26:34])
    new = bytearray(old)
    is_server = [old[off] == 127 and 11 <= old[off + 3] <= 19 for off in (0, 4)]
    connecting = None
    if all(is_server) and f[23] == 6 and len(f) >= 14 + ihl + 4:
        sport, dport = struct.unpack("!HH", f[14 + ihl:14 + ihl + 4])
        connecting = 0 if sport > dport else 4
    for off in (0, 4):
        a = old[off:off + 4]
        if a[0] != 127:
            continue
        last = a[3]
        if 11 <= last <= 19 and off != connecting:
            new[off:off + 4] = bytes([10, 0, cluster, last])
        else:
            new[off:off + 4] = bytes([10, 1 + copy // 250, copy % 250, last])
    if bytes(new) == old:
        return frame
    f[26:34] = new
    ow = words(old[0:4]) + words(old[4:8])
    nw = words(bytes(new[0:4])) + words(bytes(new[4:8]))
    ipc = struct.unpack("!H", f[24:26])[0]
    f[24:26] = struct.pack("!H", csum_adjust(ipc, ow, nw))
    if f[23] == 6 and len(f) >= 14 + ihl + 18:
        at = 14 + ihl + 16  # the TCP checksum covers the pseudo-header's addresses
        tc = struct.unpack("!H", f[at:at + 2])[0]
        f[at:at + 2] = struct.pack("!H", csum_adjust(tc, ow, nw))
        offset_sequence_numbers(f, 14 + ihl, copy)
    return bytes(f)


def isn_offsets(copy):
    """This copy's offsets of the client's and the server's sequence numbers."""
    client = ((copy + 1) * 2654435761) & 0xFFFFFFFF
    server = ((copy + 1) * 2246822519 + 374761393) & 0xFFFFFFFF
    return client, server


def offset_sequence_numbers(f, tcp, copy):
    """Shift seq by the sender's offset, and ack and SACK blocks by the receiver's. The
    server is the end with the lower port (27017 against an ephemeral one), which holds
    between members too, where both ends are servers."""
    client, server = isn_offsets(copy)
    sport, dport = struct.unpack("!HH", f[tcp:tcp + 4])
    mine, theirs = (server, client) if sport < dport else (client, server)
    shift_tcp(f, tcp, mine, theirs)


def shift_round(frame, r):
    """A later round's frame with every sequence number moved on by the round's offset (both
    ends alike): the same hosts reconnecting pick new initial sequence numbers, so a
    round's connections are new ones, not the previous round's resumed."""
    f = bytearray(frame)
    if len(f) < 34 or f[12:14] != b"\x08\x00" or f[23] != 6:
        return frame
    tcp = 14 + (f[14] & 0x0F) * 4
    if len(f) < tcp + 20:
        return frame
    offset = (r * 0x9E3779B9) & 0xFFFFFFFF
    shift_tcp(f, tcp, offset, offset)
    return bytes(f)


def shift_tcp(f, tcp, mine, theirs):
    """Add `mine` to the segment's seq and `theirs` to its ack and SACK edges, fixing the
    TCP checksum (RFC 1624)."""
    flags = f[tcp + 13]
    has_ack = flags & 0x10
    old = bytes(f[tcp:tcp + 20 + max(0, ((f[tcp + 12] >> 4) * 4) - 20)])
    seq, ack = struct.unpack("!II", f[tcp + 4:tcp + 12])
    f[tcp + 4:tcp + 8] = struct.pack("!I", (seq + mine) & 0xFFFFFFFF)
    if has_ack:
        f[tcp + 8:tcp + 12] = struct.pack("!I", (ack + theirs) & 0xFFFFFFFF)
    # SACK blocks (option 5) name the peer's sequence numbers.
    at, end = tcp + 20, tcp + len(old)
    while at < end:
        kind = f[at]
        if kind == 0:
            break
        if kind == 1:
            at += 1
            continue
        if at + 1 >= end or f[at + 1] < 2:
            break
        length = f[at + 1]
        if kind == 5:
            for edge in range(at + 2, min(at + length, end) - 3, 4):
                v = struct.unpack("!I", f[edge:edge + 4])[0]
                f[edge:edge + 4] = struct.pack("!I", (v + theirs) & 0xFFFFFFFF)
        at += length
    new = bytes(f[tcp:tcp + len(old)])
    n = len(old) // 2
    ow = struct.unpack("!%dH" % n, old[:2 * n])
    nw = struct.unpack("!%dH" % n, new[:2 * n])
    c = struct.unpack("!H", f[tcp + 16:tcp + 18])[0]
    f[tcp + 16:tcp + 18] = struct.pack("!H", csum_adjust(c, ow, nw))


def copy_stream(path, copy, cluster, shift_us):
    for us, frame in records(path):
        yield us + shift_us, copy, cluster, frame


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--copies", type=int, default=200, help="application hosts per light case")
    p.add_argument("--busy-copies", type=int, default=16, help="application hosts replaying the heavy case")
    p.add_argument("--spread", type=float, default=120.0, help="seconds over which copies start")
    p.add_argument("--repeat", type=int, default=1, help="rounds written one after another in time")
    a = p.parse_args()
    with open(a.out, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        packets, last = write_round(out, a, 0)
    # Later rounds are the first one shifted in time (each starts a minute after the
    # previous one's last packet) and in sequence space: copied record by record instead of
    # merged again.
    first_round_end = os.path.getsize(a.out)
    per_round = packets
    for r in range(1, a.repeat):
        shift = r * (last + 60_000_000)
        with open(a.out, "rb") as src, open(a.out, "ab") as out:
            src.seek(24)
            while src.tell() < first_round_end:
                sec, frac, caplen, origlen = struct.unpack("<IIII", src.read(16))
                us = sec * 1_000_000 + frac + shift
                out.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, caplen, origlen))
                out.write(shift_round(src.read(caplen), r))
        packets += per_round
    print("%s: %d packets, %.1f MB, %d round(s)" % (a.out, packets, os.path.getsize(a.out) / 1e6, a.repeat))


def write_round(out, a, round_start):
    """One round of every case's copies, merged in time order, starting at round_start
    (µs after the first case's first packet). Returns (packets, last timestamp)."""
    cases = sorted(glob.glob(os.path.join(LAB, "*", "capture.pcap")))
    streams = []
    base = None
    for path in cases:
        first = next(records(path), None)
        if first is None:
            continue
        base = first[0] if base is None else min(base, first[0])
    # Copies are numbered across cases, each its own host: 10.(1 + copy // 250).(copy % 250).
    copy = 0
    for ci, path in enumerate(cases):
        first = next(records(path), None)
        if first is None:
            continue
        n = a.busy_copies if HEAVY in path else a.copies
        for k in range(n):
            # Line every case up at the same start, then spread the copies over time.
            shift = round_start + (base - first[0]) + int((k * 7919 % 1000) / 1000 * a.spread * 1e6)
            streams.append(copy_stream(path, copy, ci + 1, shift))
            copy += 1
    if copy > 254 * 250 or len(cases) > 254:
        raise SystemExit("too many copies or cases for the 10.0.0.0/8 address plan")
    packets = 0
    last = base + round_start
    for us, copy, cluster, frame in heapq.merge(*streams, key=lambda r: r[0]):
        frame = rewrite(frame, copy, cluster)
        out.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(frame), len(frame)))
        out.write(frame)
        packets += 1
        last = us
    return packets, last - base


if __name__ == "__main__":
    main()
