#!/usr/bin/env python3
"""Read every lab case as a cut or lossy capture and score the verdicts against its truth.

What tests/cut_windows.rs and tests/capture_loss.rs assert (never confidently wrong),
measured more widely, to see where a rule change moves verdicts: each case cut to start
at a fraction of its duration (--from), or to stop at one (--until), or with a share of
its packets dropped at random (--loss), read by the release build with the case's key
log when it has one. Prints verdicts per (window, confidence, right or wrong); -v lists
the wrong ones at medium or high confidence, -vv every wrong one.

Usage: scripts/eval/lab-windows.py [--from 0.1,0.3,0.5,0.7] [--until 0.2,0.4,0.6]
                                   [--loss 0.04,0.1] [--case NAME ...] [-v | -vv]
Needs editcap and capinfos (Debian's wireshark-common); cut files go to a temporary folder.
"""
import argparse
import collections
import glob
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
LAB = os.path.join(ROOT, "testdata", "lab")
BIN = os.path.join(ROOT, "target", "release", "conn-attrib")


def fractions(text):
    return [float(x) for x in text.split(",") if x]


def times(pcap):
    out = subprocess.run(["capinfos", "-T", "-r", "-a", "-e", "-S", pcap], capture_output=True, text=True, check=True)
    first, last = out.stdout.strip().split("\t")[-2:]
    return float(first), float(last)


def drop(src, dst, rate, seed):
    """A copy of `src` (as pcap) with each packet dropped with probability `rate`."""
    plain = dst + ".pcap-in"
    subprocess.run(["editcap", "-F", "pcap", src, plain], check=True, capture_output=True)
    data = open(plain, "rb").read()
    endian = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    rnd = random.Random(seed)
    out, at = bytearray(data[:24]), 24
    while at + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[at + 8:at + 12])[0]
        record = data[at:at + 16 + caplen]
        at += 16 + caplen
        if rnd.random() >= rate:
            out += record
    open(dst, "wb").write(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="starts", default="0.1,0.3,0.5,0.7")
    p.add_argument("--until", dest="ends", default="0.2,0.4,0.6")
    p.add_argument("--loss", default="")
    p.add_argument("--case", action="append", default=[])
    p.add_argument("-v", "--verbose", action="count", default=0)
    a = p.parse_args()
    for tool in ("editcap", "capinfos"):
        if not shutil.which(tool):
            sys.exit("%s not found: apt-get install wireshark-common" % tool)
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    tally, wrong = collections.Counter(), []
    tmp = tempfile.mkdtemp(prefix="lab-windows-")
    try:
        for truth_path in sorted(glob.glob(os.path.join(LAB, "*", "truth.json"))):
            case_dir = os.path.dirname(truth_path)
            name = os.path.basename(case_dir)
            if a.case and name not in a.case:
                continue
            truth = json.load(open(truth_path))
            capture = os.path.join(case_dir, truth["capture"])
            keylog = os.path.join(case_dir, truth["keylog"]) if truth.get("keylog") else None
            roles = {(c["client"], c["server"]): c["role"] for c in truth["connections"]}
            first, last = times(capture)
            windows = [("from %.2f" % f, ["-A", "%.6f" % (first + (last - first) * f)]) for f in fractions(a.starts)]
            windows += [("until %.2f" % f, ["-B", "%.6f" % (first + (last - first) * f)]) for f in fractions(a.ends)]
            windows += [("loss %.2f" % f, None) for f in fractions(a.loss)]
            for label, cut in windows:
                path = os.path.join(tmp, "%s-%s.pcap" % (name, label.replace(" ", "-")))
                if cut is None:
                    drop(capture, path, float(label.split()[1]), seed=len(name))
                else:
                    subprocess.run(["editcap"] + cut + [capture, path], check=True, capture_output=True)
                args = [BIN, path, "--format", "json", "--threads", "1"] + (["--keylog", keylog] if keylog else [])
                out = subprocess.run(args, capture_output=True, text=True).stdout
                if not out:
                    print("%s %s: no report" % (name, label), file=sys.stderr)
                    continue
                for c in json.loads(out)["connections"]:
                    role = roles.get((c["client"], c["server"]))
                    if role is None:
                        continue
                    right = c["class"] == role
                    tally[(label.split()[0], c["confidence"], right)] += 1
                    if not right:
                        wrong.append((name, label, c["client"], c["class"], role, c["confidence"], c["evidence"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%-6s %-7s %8s %8s" % ("window", "conf.", "right", "wrong"))
    for kind in ("from", "until", "loss"):
        for conf in ("high", "medium", "low"):
            if tally[(kind, conf, True)] or tally[(kind, conf, False)]:
                print("%-6s %-7s %8d %8d" % (kind, conf, tally[(kind, conf, True)], tally[(kind, conf, False)]))
    for w in wrong:
        if a.verbose >= 2 or (a.verbose and w[5] != "low"):
            print("%s [%s] %s read as %s (%s; truth %s): %s" % (w[0], w[1], w[2], w[3], w[5], w[4], w[6][:300]))
    return 1 if any(w[5] == "high" for w in wrong) else 0


if __name__ == "__main__":
    sys.exit(main())
