// WebSocket peers for sansproxy's tests, on Node's `ws`. `server`: an echo origin that prints
// `port N`, then a JSON line with the close code and reason of each connection a client closed.
// `client URL PROXY`: through PROXY (`http://HOST:PORT`, with CONNECT, or `-`), 100 text and
// 10 x 1 MiB binary messages echoed byte-exact, then close 4001; prints `ok`.
const crypto = require("crypto");
const WebSocket = require("ws");
const [mode, ...args] = process.argv.slice(2);

if (mode === "server") {
  const wss = new WebSocket.WebSocketServer({ host: "127.0.0.1", port: 0, maxPayload: 0 });
  wss.on("listening", () => console.log(`port ${wss.address().port}`));
  wss.on("connection", (ws) => {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on("close", (code, reason) => console.log(JSON.stringify({ code, reason: reason.toString() })));
  });
} else if (mode === "client") {
  const [url, proxy] = args;
  const options = { maxPayload: 0 };
  if (proxy !== "-") {
    const { HttpsProxyAgent } = require("https-proxy-agent");
    options.agent = new HttpsProxyAgent(proxy);
  }
  const ws = new WebSocket(url, options);
  const sent = [];
  for (let i = 0; i < 100; i++) sent.push(`node ${i}: ünïcødé ✓ `.repeat((i % 5) + 1));
  for (let i = 0; i < 10; i++) sent.push(crypto.randomBytes(1 << 20));
  let at = 0;
  const fail = (why) => { console.error(why); process.exit(1); };
  const timer = setTimeout(() => fail("timed out"), 60000);
  ws.on("error", (e) => fail(`error: ${e.message}`));
  ws.on("open", () => ws.send(sent[0]));
  ws.on("message", (data, isBinary) => {
    const want = sent[at];
    const same = typeof want === "string" ? !isBinary && data.toString() === want : isBinary && want.equals(data);
    if (!same) fail(`message ${at} differs`);
    at += 1;
    if (at < sent.length) ws.send(sent[at]);
    else ws.close(4001, "node says bye");
  });
  ws.on("close", (code) => {
    clearTimeout(timer);
    if (at !== sent.length) fail(`closed after ${at} messages with ${code}`);
    console.log("ok");
  });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
