# A WebSocket client for sansproxy's tests, on Python's `websockets` (sync API). Arguments:
# CHECK URL PROXY CAFILE, PROXY `-` for none (else `http://HOST:PORT`, used with CONNECT),
# CAFILE `-` for ws://. Prints `ok` and what it measured when every assertion held.
import hashlib, os, ssl, sys, time
from websockets.sync.client import connect

check, url, proxy, cafile = sys.argv[1:5]
kwargs = dict(max_size=None, open_timeout=10, close_timeout=10, ping_interval=None,
              proxy=None if proxy == "-" else proxy)
if cafile != "-":
    kwargs["ssl"] = ssl.create_default_context(cafile=cafile)

def path(p):
    return url.rstrip("/") + p

if check == "echo":
    with connect(path("/echo"), **kwargs) as ws:
        for i in range(100):
            text = f"message {i}: héllo wörld € 𝄞 " * (i % 7 + 1)
            ws.send(text)
            got = ws.recv(timeout=10)
            assert got == text, ("text", i, got[:80])
        for i in range(10):
            data = os.urandom(1 << 20)
            ws.send(data)
            got = ws.recv(timeout=30)
            assert got == data, ("binary", i, len(got))
        ws.close(4001, "client says bye")
    print("ok")
elif check == "spread":
    with connect(path("/spread"), **kwargs) as ws:
        times = []
        for i in range(5):
            assert ws.recv(timeout=10) == f"tick {i}"
            times.append(time.monotonic())
        spread = times[-1] - times[0]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert spread > 0.3, ("batched", gaps)
        assert min(gaps) > 0.05, ("batched", gaps)
        ws.close()
    print(f"ok spread {spread:.3f}s")
elif check == "big":
    size = int(sys.argv[5]) << 20
    data = os.urandom(1 << 20) * (size >> 20)
    with connect(path("/echo"), **kwargs) as ws:
        start = time.monotonic()
        ws.send(data)
        got = ws.recv(timeout=120)
        took = time.monotonic() - start
        assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), "big echo differs"
        ws.close()
    print(f"ok {size >> 20} MiB both ways in {took:.2f}s")
elif check == "slow":
    mib = int(sys.argv[5])
    with connect(path(f"/firehose/{mib}"), **kwargs) as ws:
        # Read nothing for a while: the server must be held back, not the proxy fill up.
        print("stalled", flush=True)
        time.sleep(3)
        got = 0
        while True:
            message = ws.recv(timeout=60)
            if message == "done":
                break
            assert message == bytes(range(256)) * 256
            got += len(message)
        assert got == mib << 20, ("firehose", got)
        ws.close()
    print(f"ok {mib} MiB read slowly")
elif check == "explicit":
    # An explicit proxy's own form: `GET http://host:port/echo` with Upgrade, no CONNECT. The
    # `websockets` client only tunnels, so its sans-I/O protocol runs over our own socket.
    import socket
    from urllib.parse import urlsplit
    from websockets.client import ClientProtocol
    from websockets.frames import Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri
    target = urlsplit(url)
    phost, pport = urlsplit(proxy).hostname, urlsplit(proxy).port
    protocol = ClientProtocol(parse_uri(path("/echo")), max_size=None)
    request = protocol.connect()
    request.path = f"http://{target.hostname}:{target.port}/echo"
    protocol.send_request(request)
    sock = socket.create_connection((phost, pport), timeout=10)

    def flush():
        for data in protocol.data_to_send():
            if data:
                sock.sendall(data)

    pending = []

    def events():
        while True:
            pending.extend(protocol.events_received())
            if pending:
                return [pending.pop(0)]
            data = sock.recv(65536)
            if not data:
                raise AssertionError("connection closed early")
            protocol.receive_data(data)
            flush()

    flush()
    [response] = events()
    assert isinstance(response, Response) and response.status_code == 101, response
    assert protocol.handshake_exc is None, protocol.handshake_exc
    sent = [f"explicit {i} ✓" for i in range(10)] + [os.urandom(100000), os.urandom(3)]
    for message in sent:
        if isinstance(message, str):
            protocol.send_text(message.encode())
        else:
            protocol.send_binary(message)
        flush()
        # The proxy may pass a message on in more fragments than it was sent in.
        [frame] = events()
        opcode, data = frame.opcode, bytes(frame.data)
        while not frame.fin:
            [frame] = events()
            assert frame.opcode == Opcode.CONT, frame
            data += bytes(frame.data)
        data = data.decode() if opcode == Opcode.TEXT else data
        assert data == message, ("explicit echo", str(message)[:40])
    protocol.send_close(4001, "client says bye")
    flush()
    [frame] = events()
    assert frame.opcode == Opcode.CLOSE, frame
    sock.close()
    print("ok")
else:
    raise SystemExit(f"unknown check {check}")
