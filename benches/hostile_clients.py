#!/usr/bin/env python3
"""Hostile RTMP clients for benches/soak.sh: for DURATION seconds, against HOST:PORT (which
must be on 127.0.0.0/8), keep opening connections that each do one hostile thing, a few at a
time, and print what they did at the end. Bounded: at most CONCURRENCY connections at once,
each closed within a few seconds, and the loop ends by itself.

Kinds (round robin):
  nulls      one command of 60 KiB of AMF0 null markers (the AMF value budget)
  bignulls   a command header announcing 8 MiB, then 1 MiB of nulls (the command limit)
  longapp    connect with a 30 KiB app name (name limits)
  unknown    connect, then 200 unknown commands with 4 KiB names (log budget)
  plays      connect, createStream, then plays of random names as fast as possible (call budget)
  partial    a 1 MiB video message header and half its body, then silence (partial messages)
  slowloris  half a handshake, then silence (handshake timeout)
  garbage    random bytes after the handshake

usage: hostile_clients.py HOST PORT DURATION [CONCURRENCY]
"""

import os
import random
import socket
import struct
import sys
import threading
import time


def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_num(n):
    return b"\x00" + struct.pack(">d", n)


def amf_obj(props):
    body = b"".join(struct.pack(">H", len(k)) + k.encode() + v for k, v in props)
    return b"\x03" + body + b"\x00\x00\x09"


def chunks(type_id, payload, csid=3, stream_id=0, chunk_size=128, length=None):
    """One message as chunks; `length` may claim more than the payload holds."""
    length = len(payload) if length is None else length
    out = bytes([csid]) + b"\x00\x00\x00" + struct.pack(">I", length)[1:]
    out += bytes([type_id]) + struct.pack("<I", stream_id)
    for i in range(0, len(payload), chunk_size):
        if i:
            out += bytes([0xC0 | csid])
        out += payload[i : i + chunk_size]
    return out


def set_chunk_size(size):
    return chunks(1, struct.pack(">I", size), csid=2)


def command(name, txn, obj=b"\x05", *args):
    return amf_str(name) + amf_num(txn) + obj + b"".join(args)


def connect_cmd(app="live"):
    return command(
        "connect",
        1,
        amf_obj([("app", amf_str(app)), ("tcUrl", amf_str("rtmp://127.0.0.1/" + app))]),
    )


def handshake(sock):
    sock.sendall(b"\x03" + bytes(1536))
    need, got = 1 + 1536 + 1536, b""
    while len(got) < need:
        part = sock.recv(65536)
        if not part:
            raise ConnectionError("closed in handshake")
        got += part
    sock.sendall(got[1 : 1 + 1536])


def drain(sock, seconds):
    """Reads until the server closes or `seconds` pass; True if the server closed."""
    deadline = time.time() + seconds
    sock.settimeout(0.2)
    while time.time() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def run_one(kind, host, port, rng):
    sock = socket.create_connection((host, port), timeout=5)
    try:
        if kind == "slowloris":
            sock.sendall(b"\x03" + bytes(700))
            return drain(sock, 12)
        handshake(sock)
        big = set_chunk_size(65536)
        if kind == "nulls":
            sock.sendall(big + chunks(20, amf_str("connect") + b"\x05" * 60000, chunk_size=65536))
        elif kind == "bignulls":
            payload = amf_str("connect") + b"\x05" * (1 << 20)
            sock.sendall(big + chunks(20, payload, chunk_size=65536, length=8 << 20))
        elif kind == "longapp":
            sock.sendall(big + chunks(20, connect_cmd("a" * 30000), chunk_size=65536))
        elif kind == "unknown":
            msgs = big + chunks(20, connect_cmd(), chunk_size=65536)
            for i in range(200):
                msgs += chunks(20, command("x%d%s" % (i, "y" * 4000), i + 2), chunk_size=65536)
            sock.sendall(msgs)
        elif kind == "plays":
            msgs = big + chunks(20, connect_cmd(), chunk_size=65536)
            msgs += chunks(20, command("createStream", 2), chunk_size=65536)
            for i in range(100):
                name = "r%08x" % rng.getrandbits(32)
                msgs += chunks(20, command("play", i + 3, b"\x05", amf_str(name)), stream_id=1,
                               chunk_size=65536)
            sock.sendall(msgs)
        elif kind == "partial":
            sock.sendall(big + chunks(9, b"\x17" * (512 << 10), csid=6, stream_id=1,
                                      chunk_size=65536, length=1 << 20))
        elif kind == "garbage":
            sock.sendall(os.urandom(4096))
        return drain(sock, 5)
    except OSError:
        return True
    finally:
        sock.close()


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        sys.exit(2)
    host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    if not host.startswith("127."):
        sys.exit("hostile_clients.py only targets 127.0.0.0/8")
    kinds = ["nulls", "bignulls", "longapp", "unknown", "plays", "partial", "slowloris", "garbage"]
    counts = {k: [0, 0] for k in kinds}  # kind -> [connections, closed by the server]
    lock = threading.Lock()
    end = time.time() + duration

    def worker(n):
        rng = random.Random(n)
        i = n
        while time.time() < end:
            kind = kinds[i % len(kinds)]
            i += 1
            try:
                closed = run_one(kind, host, port, rng)
            except OSError:
                closed = True
            with lock:
                counts[kind][0] += 1
                counts[kind][1] += int(closed)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(c for c, _ in counts.values())
    print("hostile connections: %d" % total)
    for kind in kinds:
        print("  %-10s %5d opened, %5d closed by the server" % (kind, *counts[kind]))


if __name__ == "__main__":
    main()
