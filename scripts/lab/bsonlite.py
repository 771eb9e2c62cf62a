"""A small BSON codec for the lab's test server.

The server must not share code with the drivers it tests, so it carries its own codec:
enough types for what drivers send to a server and what the server answers.
"""
import datetime
import os
import struct


class ObjectId:
    __slots__ = ("raw",)

    def __init__(self, raw=None):
        self.raw = raw if raw is not None else os.urandom(12)

    def __repr__(self):
        return "ObjectId(%s)" % self.raw.hex()

    def __eq__(self, other):
        return isinstance(other, ObjectId) and other.raw == self.raw

    def __hash__(self):
        return hash(self.raw)


class Int64(int):
    """An integer always encoded as int64."""


class Binary:
    __slots__ = ("subtype", "data")

    def __init__(self, data, subtype=0):
        self.data = data
        self.subtype = subtype

    def __repr__(self):
        return "Binary(%d, %d bytes)" % (self.subtype, len(self.data))


class Timestamp:
    __slots__ = ("time", "inc")

    def __init__(self, time, inc):
        self.time, self.inc = time, inc


class Raw:
    """An element of a type this codec does not interpret, kept as bytes."""

    __slots__ = ("type", "data")

    def __init__(self, type_, data):
        self.type, self.data = type_, data


def _cstring(s):
    b = s.encode()
    if b"\0" in b:
        raise ValueError("NUL in key")
    return b + b"\0"


def _element(key, value):
    k = _cstring(key)
    if isinstance(value, bool):
        return b"\x08" + k + (b"\x01" if value else b"\x00")
    if isinstance(value, Int64):
        return b"\x12" + k + struct.pack("<q", value)
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return b"\x10" + k + struct.pack("<i", value)
        return b"\x12" + k + struct.pack("<q", value)
    if isinstance(value, float):
        return b"\x01" + k + struct.pack("<d", value)
    if isinstance(value, str):
        b = value.encode()
        return b"\x02" + k + struct.pack("<i", len(b) + 1) + b + b"\0"
    if isinstance(value, dict):
        return b"\x03" + k + encode(value)
    if isinstance(value, (list, tuple)):
        return b"\x04" + k + encode({str(i): v for i, v in enumerate(value)})
    if isinstance(value, (bytes, bytearray)):
        value = Binary(bytes(value))
    if isinstance(value, Binary):
        return b"\x05" + k + struct.pack("<i", len(value.data)) + bytes([value.subtype]) + value.data
    if isinstance(value, ObjectId):
        return b"\x07" + k + value.raw
    if isinstance(value, datetime.datetime):
        ms = int(value.timestamp() * 1000)
        return b"\x09" + k + struct.pack("<q", ms)
    if value is None:
        return b"\x0a" + k
    if isinstance(value, Timestamp):
        return b"\x11" + k + struct.pack("<II", value.inc, value.time)
    if isinstance(value, Raw):
        return bytes([value.type]) + k + value.data
    raise TypeError("cannot encode %r" % type(value))


def encode(doc):
    body = b"".join(_element(k, v) for k, v in doc.items())
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def _read_cstring(b, i):
    end = b.index(b"\0", i)
    return b[i:end].decode("utf-8", "replace"), end + 1


def decode(b, i=0):
    """Decode one document starting at b[i]; returns (dict, end offset)."""
    (length,) = struct.unpack_from("<i", b, i)
    end = i + length
    i += 4
    out = {}
    while i < end - 1:
        t = b[i]
        i += 1
        key, i = _read_cstring(b, i)
        if t == 0x01:
            (out[key],) = struct.unpack_from("<d", b, i)
            i += 8
        elif t in (0x02, 0x0D, 0x0E):
            (n,) = struct.unpack_from("<i", b, i)
            out[key] = b[i + 4:i + 4 + n - 1].decode("utf-8", "replace")
            i += 4 + n
        elif t == 0x03:
            out[key], i = decode(b, i)
        elif t == 0x04:
            d, i = decode(b, i)
            out[key] = list(d.values())
        elif t == 0x05:
            (n,) = struct.unpack_from("<i", b, i)
            out[key] = Binary(bytes(b[i + 5:i + 5 + n]), b[i + 4])
            i += 5 + n
        elif t == 0x06 or t == 0x0A or t == 0x7F or t == 0xFF:
            out[key] = None
        elif t == 0x07:
            out[key] = ObjectId(bytes(b[i:i + 12]))
            i += 12
        elif t == 0x08:
            out[key] = b[i] != 0
            i += 1
        elif t == 0x09:
            (ms,) = struct.unpack_from("<q", b, i)
            out[key] = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
            i += 8
        elif t == 0x0B:
            _, i = _read_cstring(b, i)
            _, i = _read_cstring(b, i)
            out[key] = None
        elif t == 0x10:
            (out[key],) = struct.unpack_from("<i", b, i)
            i += 4
        elif t == 0x11:
            inc, time = struct.unpack_from("<II", b, i)
            out[key] = Timestamp(time, inc)
            i += 8
        elif t == 0x12:
            (v,) = struct.unpack_from("<q", b, i)
            out[key] = Int64(v)
            i += 8
        elif t == 0x13:
            out[key] = Raw(0x13, bytes(b[i:i + 16]))
            i += 16
        else:
            raise ValueError("unsupported BSON type 0x%02x" % t)
    return out, end
