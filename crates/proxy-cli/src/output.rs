//! What the proxy prints: a line per flow, WebSocket and failed client handshake on stdout
//! ([`Printer`], through [`FlowLog`]), the CA notice and the log on stderr.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use proxy_core::{FlowId, Hook, HookKind, HookReply, HookSet, HttpFlow};
use proxy_core::tls::{Remedies, TlsCause, TlsFailure, TlsPeer};
use proxy_core::websocket::{MessageKind, Peer, WebSocketEnd, WebSocketMessage};
use proxy_io::tls::CaInfo;
use proxy_io::Handler;

use crate::metrics;

/// Where the CA certificate is and how to make clients trust it: for each kind of client
/// when the CA was just made, in one line naming the settings on every later start. git's
/// `GIT_SSL_CAINFO` is named rather than `-c http.sslCAInfo`, which it overrides when set.
pub(crate) fn ca_notice(ca: &CaInfo) -> String {
    let path = ca.cert_path.display();
    if !ca.created {
        return format!(
            "sansproxy: intercepting TLS; clients must trust the CA certificate {path}\n\
             \x20 (curl --cacert; GIT_SSL_CAINFO for git; REQUESTS_CA_BUNDLE or SSL_CERT_FILE for Python; \
             NODE_EXTRA_CA_CERTS for Node; or the system store: update-ca-certificates)\n"
        );
    }
    format!(
        "sansproxy: intercepting TLS with a new CA; clients must trust its certificate {path}\n\
         \x20 curl:    curl --cacert {path} ...\n\
         \x20 git:     GIT_SSL_CAINFO={path} git ...\n\
         \x20 Python:  REQUESTS_CA_BUNDLE={path} (requests), SSL_CERT_FILE={path} (urllib, httpx)\n\
         \x20 Node:    NODE_EXTRA_CA_CERTS={path} node ...\n\
         \x20 system (Debian, Ubuntu): sudo cp {path} /usr/local/share/ca-certificates/sansproxy.crt \
         && sudo update-ca-certificates\n"
    )
}

/// Prints a line for each finished or failed flow, for each WebSocket's start and end, and
/// with `verbose` for each WebSocket message.
pub(crate) struct Printer {
    pub(crate) quiet: bool,
    pub(crate) verbose: bool,
    pub(crate) lines: FlowLog,
    /// Put before each line: the listener's mode and port, when there are several (set once
    /// the listener is bound, so that port 0 shows as the port it got).
    pub(crate) label: Arc<OnceLock<String>>,
    /// With --metrics: where flows and handshakes are counted, and under which listener name.
    pub(crate) metrics: Option<(Arc<metrics::Metrics>, Arc<OnceLock<String>>)>,
    pub(crate) reverse: bool,
}

impl Handler for Printer {
    fn hooks(&self) -> HookSet {
        let counted: HookSet = match &self.metrics {
            Some(_) => [HookKind::Response, HookKind::Error, HookKind::TlsEstablished, HookKind::TlsFailed].into_iter().collect(),
            None => HookSet::NONE,
        };
        if self.quiet {
            return counted;
        }
        let hooks = [HookKind::Response, HookKind::Error, HookKind::TlsFailed, HookKind::WebSocketStart, HookKind::WebSocketEnd];
        let hooks: HookSet = hooks.into_iter().chain(counted.contains(HookKind::TlsEstablished).then_some(HookKind::TlsEstablished)).collect();
        if self.verbose { hooks.with(HookKind::WebSocketMessage) } else { hooks }
    }

    async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
        if let Some((metrics, listener)) = &self.metrics {
            let listener = listener.get().map_or("", String::as_str);
            match &hook {
                Hook::Response(flow) | Hook::Error(flow) => metrics.flow_ended(listener, self.reverse, flow),
                Hook::TlsEstablished(info) => metrics.handshake(listener, info.peer, true),
                // That client's handshake succeeded, and was counted so.
                Hook::TlsFailed(failure) if failure.cause == TlsCause::ClosedAfterHandshake => {}
                Hook::TlsFailed(failure) => metrics.handshake(listener, failure.peer, false),
                _ => {}
            }
            if self.quiet {
                return HookReply::Continue;
            }
        }
        let line = match &hook {
            Hook::Response(flow) | Hook::Error(flow) => flow_line(flow, Instant::now()),
            Hook::WebSocketStart(flow) => Some(websocket_start_line(flow)),
            Hook::TlsFailed(failure) => tls_failure_line(failure),
            Hook::WebSocketMessage(message) => Some(message_line(message)),
            Hook::WebSocketEnd(end) => Some(websocket_end_line(end)),
            _ => None,
        };
        if let Some(line) = line {
            let label = self.label.get().map_or("", String::as_str);
            self.lines.push(format!("{label}{line}"));
        }
        HookReply::Continue
    }
}

/// The flow log's writer: a thread that takes lines from the connections' tasks and writes
/// whatever has piled up with one system call, so that under load the log costs a write per
/// batch instead of a write (and a lock) per flow, while a lone line still goes out at once.
#[derive(Clone)]
pub(crate) struct FlowLog {
    tx: std::sync::mpsc::Sender<String>,
}

impl FlowLog {
    pub(crate) fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
            while let Ok(line) = rx.recv() {
                let mut line = Some(line);
                while let Some(l) = line {
                    // A closed stdout (a pipe whose reader left) is not the proxy's problem.
                    let _ = out.write_all(l.as_bytes());
                    line = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
        });
        Self { tx }
    }

    fn push(&self, line: String) {
        // The writer only stops when the process does.
        let _ = self.tx.send(line);
    }
}

/// `CLIENT METHOD URL -> STATUS BYTESb DURATIONms (client VERSION, server VERSION)`, or
/// `... -> error: MESSAGE`. A `CONNECT` names only its client's version: what answered it is
/// the proxy (or an upstream proxy), not the server of the exchanges inside, and a tunnel is
/// `-> 200 tunnel DURATIONms (client VERSION)`.
fn flow_line(flow: &HttpFlow, now: Instant) -> Option<String> {
    let req = &flow.request;
    let head = format!("{} {} {}", flow.client.peer, req.method, req.url());
    if let Some(error) = &flow.error {
        return Some(format!("{head} -> error: {}\n", error.message));
    }
    let response = flow.response.as_ref()?;
    let took = flow.ended.unwrap_or(now).saturating_duration_since(flow.started);
    if req.method.eq_ignore_ascii_case("CONNECT") {
        let (status, ms, client) = (response.status, took.as_millis(), req.version.as_str());
        return Some(match (200..300).contains(&status) {
            // A tunnel: no exchange to describe, only how long it took to set up.
            true => format!("{head} -> {status} tunnel {ms}ms (client {client})\n"),
            false => format!("{head} -> {status} {}b {ms}ms (client {client})\n", flow.response_body_bytes),
        });
    }
    Some(format!(
        "{head} -> {} {}b {}ms (client {}, server {})\n",
        response.status,
        flow.response_body_bytes,
        took.as_millis(),
        req.version.as_str(),
        response.version.as_str(),
    ))
}

/// `CLIENT GET URL -> 101 websocket #ID (client HTTP/1.1, server HTTP/1.1)`: the upgrade, and
/// the id the flow's message lines carry.
fn websocket_start_line(flow: &HttpFlow) -> String {
    let server = flow.response.as_ref().map_or("?", |r| r.version.as_str());
    format!(
        "{} {} {} -> 101 websocket #{} (client {}, server {server})\n",
        flow.client.peer,
        flow.request.method,
        flow.request.url(),
        flow.id.0,
        flow.request.version.as_str(),
    )
}

/// `  #ID client -> server text 5b "Hello"`: one message (or piece) and its first bytes.
fn message_line(message: &WebSocketMessage) -> String {
    const SHOWN: usize = 40;
    let arrow = match message.from {
        Peer::Client => "client -> server",
        Peer::Server => "server -> client",
    };
    let kind = match message.kind {
        MessageKind::Text => "text",
        MessageKind::Binary => "binary",
    };
    let piece = if message.offset == 0 && message.last { String::new() } else { format!(" (piece at {})", message.offset) };
    let shown = &message.payload[..message.payload.len().min(SHOWN)];
    let mut preview = String::new();
    match message.kind {
        // Text as characters (a character cut at the end is left out), controls escaped.
        MessageKind::Text => {
            let text = match std::str::from_utf8(shown) {
                Ok(text) => text,
                Err(e) => std::str::from_utf8(&shown[..e.valid_up_to()]).unwrap_or_default(),
            };
            text.chars().for_each(|c| push_shown(&mut preview, c));
        }
        // Binary as printable ASCII, the rest as `\xNN`.
        MessageKind::Binary => {
            for &b in shown {
                match b {
                    0x20..=0x7e => push_shown(&mut preview, b as char),
                    _ => preview.push_str(&format!("\\x{b:02x}")),
                }
            }
        }
    }
    let more = if message.payload.len() > SHOWN { "..." } else { "" };
    format!("  #{} {arrow} {kind} {}b{piece} \"{preview}\"{more}\n", message.flow.0, message.payload.len())
}

/// `c` in a quoted preview: quotes and backslashes escaped, controls as Rust escapes them.
fn push_shown(preview: &mut String, c: char) {
    match c {
        '"' | '\\' => {
            preview.push('\\');
            preview.push(c);
        }
        c if c.is_control() => preview.extend(c.escape_default()),
        c => preview.push(c),
    }
}

/// `CLIENT websocket #ID URL closed by client: 1000 "bye", messages 3 -> 2 <-, bytes ...`.
fn websocket_end_line(end: &WebSocketEnd) -> String {
    let flow = &end.upgrade;
    let by = end.closed_by.map_or("nobody", Peer::as_str);
    let code = match end.code {
        Some(code) if end.reason.is_empty() => code.to_string(),
        Some(code) => format!("{code} {:?}", end.reason),
        None => "no close frame".to_owned(),
    };
    let error = end.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
    format!(
        "{} websocket #{} {} closed by {by}: {code}{error}, messages {} -> {} <-, bytes {} -> {} <-\n",
        flow.client.peer,
        end.flow.0,
        flow.request.url(),
        end.messages[0],
        end.messages[1],
        end.bytes[0],
        end.bytes[1],
    )
}

/// A failed client handshake has no flow to print, so it gets a line of its own, with the
/// cause and what fixes it (upstream failures show as the flow's 502, which says as much).
/// Most often the client does not trust the proxy's CA, and the line names the file to trust.
fn tls_failure_line(failure: &TlsFailure) -> Option<String> {
    if failure.peer != TlsPeer::Client {
        return None;
    }
    let name = failure.server_name.clone().unwrap_or_else(|| failure.server.host.clone());
    Some(format!("client TLS handshake for {name} ({}) failed: {failure}\n", failure.server))
}

/// Log lines go to stderr, at `warn` and above unless `RUST_LOG` says otherwise, in colour
/// only on a terminal and without `NO_COLOR` (<https://no-color.org>): a file or a pipe gets
/// no escape codes.
pub(crate) fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// How TLS failure messages (a `502`'s text, the log lines) name what fixes them: by this
/// command's flags, and the CA certificate by its file and the commands that trust it.
pub(crate) fn remedies(ca: Option<&CaInfo>) -> Remedies {
    let trust_ca = match ca {
        Some(ca) => {
            let path = ca.cert_path.display();
            let how = format!("curl --cacert {path}, GIT_SSL_CAINFO={path} git, or the system's trust store");
            format!("{path} ({how})").into()
        }
        None => "the certificate given with --cert".into(),
    };
    Remedies {
        upstream_ca: "--upstream-ca FILE".into(),
        insecure_upstream: "--insecure-upstream".into(),
        ignore_hosts: "--ignore-hosts REGEX".into(),
        trust_ca,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use proxy_core::{ClientInfo, FlowError, Request, Response, Scheme, ServerAddr, Version};

    #[test]
    fn client_tls_failures_get_a_line_naming_the_ca_to_trust() {
        let ca = CaInfo { cert_path: "/h/.sansproxy/sansproxy-ca-cert.pem".into(), created: false };
        let flags = remedies(Some(&ca));
        let cause = TlsCause::CertificateRefused(proxy_core::tls::rustls::AlertDescription::UnknownCA);
        let failure = TlsFailure {
            conn: proxy_core::ConnId::CLIENT,
            peer: TlsPeer::Client,
            server: ServerAddr::new("example.test", 443),
            server_name: Some("example.test".into()),
            remedy: cause.remedy(TlsPeer::Client, &flags),
            cause,
        };
        assert_eq!(
            tls_failure_line(&failure).as_deref(),
            Some(
                "client TLS handshake for example.test (example.test:443) failed: the client refused the \
                 proxy's certificate (alert unknown_ca); the client does not trust the proxy's CA: make the \
                 client trust /h/.sansproxy/sansproxy-ca-cert.pem (curl --cacert \
                 /h/.sansproxy/sansproxy-ca-cert.pem, GIT_SSL_CAINFO=/h/.sansproxy/sansproxy-ca-cert.pem git, \
                 or the system's trust store), or leave this host uninspected (--ignore-hosts REGEX)\n"
            )
        );
        assert_eq!(tls_failure_line(&TlsFailure { peer: TlsPeer::Server, ..failure }), None);

        // Upstream failures name the flags (in the 502 the client gets).
        let remedy = TlsCause::UnknownIssuer.remedy(TlsPeer::Server, &flags).unwrap();
        assert_eq!(
            remedy,
            "trust the CA certificate that signed it (--upstream-ca FILE) or skip verification (--insecure-upstream)"
        );
        // With no CA (a certificate of the user's own for every client), that is what to trust.
        assert_eq!(remedies(None).trust_ca, "the certificate given with --cert");
    }

    #[test]
    fn the_ca_notice_says_how_to_trust_the_ca() {
        let path = "/h/.sansproxy/sansproxy-ca-cert.pem";
        let notice = ca_notice(&CaInfo { cert_path: path.into(), created: true });
        assert_eq!(
            notice,
            "sansproxy: intercepting TLS with a new CA; clients must trust its certificate \
             /h/.sansproxy/sansproxy-ca-cert.pem\n\
             \x20 curl:    curl --cacert /h/.sansproxy/sansproxy-ca-cert.pem ...\n\
             \x20 git:     GIT_SSL_CAINFO=/h/.sansproxy/sansproxy-ca-cert.pem git ...\n\
             \x20 Python:  REQUESTS_CA_BUNDLE=/h/.sansproxy/sansproxy-ca-cert.pem (requests), \
             SSL_CERT_FILE=/h/.sansproxy/sansproxy-ca-cert.pem (urllib, httpx)\n\
             \x20 Node:    NODE_EXTRA_CA_CERTS=/h/.sansproxy/sansproxy-ca-cert.pem node ...\n\
             \x20 system (Debian, Ubuntu): sudo cp /h/.sansproxy/sansproxy-ca-cert.pem \
             /usr/local/share/ca-certificates/sansproxy.crt && sudo update-ca-certificates\n"
        );
        // On later starts, one line names every way.
        let again = ca_notice(&CaInfo { cert_path: path.into(), created: false });
        assert_eq!(
            again,
            "sansproxy: intercepting TLS; clients must trust the CA certificate /h/.sansproxy/sansproxy-ca-cert.pem\n\
             \x20 (curl --cacert; GIT_SSL_CAINFO for git; REQUESTS_CA_BUNDLE or SSL_CERT_FILE for Python; \
             NODE_EXTRA_CA_CERTS for Node; or the system store: update-ca-certificates)\n"
        );
    }

    fn flow() -> HttpFlow {
        let started = Instant::now();
        HttpFlow {
            id: FlowId(1),
            client: ClientInfo::new("127.0.0.1:51234".parse().unwrap(), "127.0.0.1:8080".parse().unwrap()),
            request: Request {
                method: "GET".into(),
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/x".into(),
                version: Version::Http11,
                headers: Default::default(),
                body: None,
                trailers: None,
            },
            response: None,
            error: None,
            buffer_request: false,
            buffer_response: false,
            request_body_bytes: 0,
            response_body_bytes: 1024,
            started,
            ended: Some(started + Duration::from_millis(3)),
        }
    }

    #[test]
    fn lines_look_like_mitmdump() {
        let mut f = flow();
        assert_eq!(flow_line(&f, Instant::now()), None);
        f.response = Some(Response::text(200, "x"));
        assert_eq!(
            flow_line(&f, Instant::now()).unwrap(),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/x -> 200 1024b 3ms (client HTTP/1.1, server HTTP/1.1)\n"
        );
        f.request.version = Version::Http2;
        assert!(flow_line(&f, Instant::now()).unwrap().ends_with(" 3ms (client HTTP/2, server HTTP/1.1)\n"));
        f.error = Some(FlowError { message: "connection refused".into(), status: Some(502) });
        assert_eq!(
            flow_line(&f, Instant::now()).unwrap(),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/x -> error: connection refused\n"
        );
    }

    #[test]
    fn a_connect_line_claims_no_server_exchange() {
        let mut f = flow();
        f.request.method = "CONNECT".into();
        f.request.path = String::new();
        f.response_body_bytes = 0;
        f.response = Some(Response { status: 200, reason: "Connection established".into(), ..Response::text(200, "") });
        assert_eq!(flow_line(&f, Instant::now()).unwrap(), "127.0.0.1:51234 CONNECT 127.0.0.1:9000 -> 200 tunnel 3ms (client HTTP/1.1)\n");
        f.response = Some(Response::text(407, "who are you?"));
        f.response_body_bytes = 12;
        assert_eq!(flow_line(&f, Instant::now()).unwrap(), "127.0.0.1:51234 CONNECT 127.0.0.1:9000 -> 407 12b 3ms (client HTTP/1.1)\n");
        f.request.version = Version::Socks5;
        f.response = Some(Response::text(200, ""));
        assert!(flow_line(&f, Instant::now()).unwrap().ends_with(" -> 200 tunnel 3ms (client SOCKS5)\n"));
    }

    #[test]
    fn websocket_lines() {
        let mut f = flow();
        f.request.path = "/chat".into();
        f.response = Some(Response { status: 101, reason: "Switching Protocols".into(), ..Response::text(101, "") });
        assert_eq!(
            websocket_start_line(&f),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/chat -> 101 websocket #1 (client HTTP/1.1, server HTTP/1.1)\n"
        );
        let message = WebSocketMessage {
            flow: FlowId(1),
            from: Peer::Server,
            kind: MessageKind::Text,
            payload: "say \"hi\"\n".repeat(10).into(),
            offset: 0,
            last: true,
            injected: false,
            time: Instant::now(),
        };
        assert_eq!(
            message_line(&message),
            "  #1 server -> client text 90b \"say \\\"hi\\\"\\nsay \\\"hi\\\"\\nsay \\\"hi\\\"\\nsay \\\"hi\\\"\\nsay \"...\n"
        );
        let unicode = WebSocketMessage { payload: "héllo wörld € ✓".into(), from: Peer::Client, ..message.clone() };
        assert_eq!(message_line(&unicode), "  #1 client -> server text 21b \"héllo wörld € ✓\"\n");
        let end = WebSocketEnd {
            flow: FlowId(1),
            upgrade: f,
            code: Some(4001),
            reason: "bye".into(),
            closed_by: Some(Peer::Client),
            error: None,
            messages: [3, 2],
            bytes: [30, 20],
            ended: Instant::now(),
        };
        assert_eq!(
            websocket_end_line(&end),
            "127.0.0.1:51234 websocket #1 http://127.0.0.1:9000/chat closed by client: 4001 \"bye\", messages 3 -> 2 <-, bytes 30 -> 20 <-\n"
        );
    }
}
