# A WebSocket origin for sansproxy's tests, on Python's `websockets`. Prints `port N` once
# listening, then one JSON line per connection that ended with a close frame from the client.
# (with the extensions negotiated). Paths: /echo echoes every message; /spread sends 5 messages 100 ms apart; /firehose/N sends
# N MiB as 64 KiB binary messages, as fast as the connection takes them, then `done`.
# Arguments: [CERT KEY] to serve wss://.
import asyncio, json, ssl, sys
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

async def handler(ws):
    path = ws.request.path
    if path == "/spread":
        for i in range(5):
            await ws.send(f"tick {i}")
            await asyncio.sleep(0.1)
        await ws.wait_closed()
        return
    if path.startswith("/firehose/"):
        chunk = bytes(range(256)) * 256
        for _ in range(int(path.rsplit("/", 1)[1]) * 16):
            await ws.send(chunk)
        await ws.send("done")
        await ws.wait_closed()
        return
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass
    finally:
        rcvd = ws.protocol.close_rcvd
        print(json.dumps({"path": path, "code": rcvd.code if rcvd else None,
                          "reason": rcvd.reason if rcvd else None,
                          "extensions": [e.name for e in ws.protocol.extensions]}), flush=True)

async def main():
    tls = None
    if len(sys.argv) == 3:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[1], sys.argv[2])
    async with serve(handler, "127.0.0.1", 0, ssl=tls, max_size=None, ping_interval=None) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()

asyncio.run(main())
