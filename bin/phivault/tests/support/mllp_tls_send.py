#!/usr/bin/env python3
"""Sends one HL7 message file over MLLP inside TLS (Python's ssl module, an independent TLS
client) and prints the ACK (segments separated by newlines). Exit 0 with an ACK, 2 when the
connection closed without one. A client certificate comes from MLLP_CLIENT_CERT and
MLLP_CLIENT_KEY (PEM files) when they are set.
  mllp_tls_send.py HOST PORT CAFILE FILE
"""
import os
import socket
import ssl
import sys


def main(host, port, cafile, path):
    ctx = ssl.create_default_context(cafile=cafile)
    if os.environ.get("MLLP_CLIENT_CERT"):
        ctx.load_cert_chain(os.environ["MLLP_CLIENT_CERT"], os.environ["MLLP_CLIENT_KEY"])
    data = open(path, "rb").read()
    with socket.create_connection((host, int(port)), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"\x0b" + data + b"\x1c\x0d")
            buf = b""
            while not buf.endswith(b"\x1c\x0d"):
                chunk = s.recv(65536)
                if not chunk:
                    return 2
                buf += chunk
    print(buf.strip(b"\x0b\x1c\x0d").decode("utf-8", "replace").replace("\r", "\n"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:5]))
    except (ConnectionError, ssl.SSLError, socket.timeout) as e:
        print(f"connection failed: {type(e).__name__}", file=sys.stderr)
        sys.exit(2)
