#!/usr/bin/env python3
"""A download through a proxy tunnel with nothing of the client's own in the way: a SOCKS5 or
HTTP CONNECT handshake by hand, then `GET PATH` and `recv_into` one 1 MiB buffer until the
server closes. Prints `MB/s bytes` (bytes include the response head).

curl's SOCKS5 code copies every received byte once more than its CONNECT path does (perf:
memmove 25% of its samples through SOCKS5, 3% through CONNECT, same syscalls), which at
2 GB/s on two cores shows as a gap that is curl's. This client treats both tunnels alike.

    bulk_client.py socks5|connect|direct PROXY_PORT HOST PORT PATH   (direct: PROXY_PORT unused)
"""
import socket, struct, sys, time
mode, proxy_port, host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
s = socket.create_connection(("127.0.0.1", port if mode == "direct" else proxy_port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def read_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(1)
        if not chunk: raise SystemExit("closed during handshake")
        data += chunk
    return data
start = time.monotonic()
if mode == "socks5":
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    name = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
    reply = s.recv(4)
    assert reply[1] == 0, reply
    rest = {1: 4, 4: 16, 3: None}[reply[3]]
    if rest is None: rest = s.recv(1)[0]
    s.recv(rest + 2)
elif mode == "connect":
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = read_until(s, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
buf = bytearray(1 << 20); view = memoryview(buf); total = 0
while True:
    n = s.recv_into(view)
    if n == 0: break
    total += n
elapsed = time.monotonic() - start
print(f"{total / elapsed / 1e6:.1f} {total}")
