//! A client for the Toxiproxy HTTP API (v2): the fault backend of real deployments, where the
//! lab's own proxy is not on the links. Each toxic goes on both streams, so a fault cuts a link
//! both ways as the lab's own faults do.
//!
//! Toxiproxy's semantics differ from `common::fault_proxy` in two ways callers should know:
//! a partition (`timeout` toxic, timeout 0) drops the bytes it swallows instead of holding
//! them, and removing it closes the connections it held; only new connections work again.

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one API call may take, connect to last byte.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest answer body read; the API's answers are a few kilobytes.
const MAX_BODY: usize = 1 << 20;

/// A fault on one proxy, applied to both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toxic {
    /// No bytes pass, no connection is closed (`timeout` with timeout 0): silence, as in a
    /// network partition.
    Partition,
    /// Every chunk is delayed by `latency_ms` ± `jitter_ms`, in each direction.
    Latency { latency_ms: u32, jitter_ms: u32 },
    /// Connections are reset (RST) as soon as data arrives (`reset_peer` with timeout 0).
    ResetPeer,
}

impl Toxic {
    /// The base name; the toxics on the server are `<name>_up` and `<name>_down`.
    pub fn name(&self) -> &'static str {
        match self {
            Toxic::Partition => "txlab_partition",
            Toxic::Latency { .. } => "txlab_latency",
            Toxic::ResetPeer => "txlab_reset_peer",
        }
    }

    fn type_and_attributes(&self) -> (&'static str, Value) {
        match *self {
            Toxic::Partition => ("timeout", json!({ "timeout": 0 })),
            Toxic::Latency {
                latency_ms,
                jitter_ms,
            } => (
                "latency",
                json!({ "latency": latency_ms, "jitter": jitter_ms }),
            ),
            Toxic::ResetPeer => ("reset_peer", json!({ "timeout": 0 })),
        }
    }
}

/// The streams a toxic is added on: client→server and server→client.
const STREAMS: [(&str, &str); 2] = [("upstream", "up"), ("downstream", "down")];

/// Why a Toxiproxy call failed. `api` is the API URL with any password shown as `***`.
#[derive(Debug, thiserror::Error)]
pub enum ToxiproxyError {
    #[error("toxiproxy API URL {api:?} is not valid: {why}")]
    BadUrl { api: String, why: &'static str },
    #[error("toxiproxy at {api}: {action}: {source}")]
    Transport {
        api: String,
        action: String,
        source: std::io::Error,
    },
    #[error("toxiproxy at {api}: {action}: no answer within {after:?}")]
    Timeout {
        api: String,
        action: String,
        after: Duration,
    },
    #[error("toxiproxy at {api}: {action}: HTTP {status}: {message}")]
    Api {
        api: String,
        action: String,
        status: u16,
        message: String,
    },
    #[error("toxiproxy at {api}: {action}: unexpected answer: {why}")]
    BadAnswer {
        api: String,
        action: String,
        why: String,
    },
}

impl ToxiproxyError {
    /// The HTTP status of an API error (404: no such proxy or toxic).
    pub fn status(&self) -> Option<u16> {
        match self {
            ToxiproxyError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A Toxiproxy API endpoint. Cheap to clone; every call is its own HTTP/1.1 connection.
#[derive(Clone)]
pub struct Toxiproxy {
    /// `host:port`, for connecting and the Host header.
    authority: String,
    /// A path prefix (no trailing `/`) for an API behind a reverse proxy.
    prefix: String,
    /// `Basic ...` when the URL carries credentials.
    authorization: Option<String>,
    /// The URL as errors show it, password redacted.
    shown: String,
}

/// Shows the redacted URL only: the derived form would print the credentials (base64).
impl std::fmt::Debug for Toxiproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Toxiproxy").field(&self.shown).finish()
    }
}

impl Toxiproxy {
    /// `api_url` is `http://[user:password@]host[:port][/prefix]`; only plain http is spoken.
    pub fn new(api_url: &str) -> Result<Toxiproxy, ToxiproxyError> {
        let bad = |why| ToxiproxyError::BadUrl {
            api: redact_http(api_url),
            why,
        };
        let rest = api_url
            .strip_prefix("http://")
            .ok_or_else(|| bad("it must start with http://"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if hostport.is_empty() {
            return Err(bad("it names no host"));
        }
        let has_port = hostport
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.contains(']'));
        let hostport = if has_port {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let authorization = userinfo.map(|info| {
            let decoded = percent_decode(info);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(decoded)
            )
        });
        let prefix = path.trim_end_matches('/').to_string();
        let user = userinfo.map(|info| info.split(':').next().unwrap_or_default());
        let shown = match (user, userinfo.is_some_and(|info| info.contains(':'))) {
            (Some(user), true) => format!("http://{user}:***@{hostport}{prefix}"),
            (Some(user), false) => format!("http://{user}@{hostport}{prefix}"),
            (None, _) => format!("http://{hostport}{prefix}"),
        };
        Ok(Toxiproxy {
            authority: hostport,
            prefix,
            authorization,
            shown,
        })
    }

    /// `host:port` of the API.
    pub fn address(&self) -> &str {
        &self.authority
    }

    /// The API URL, password redacted.
    pub fn api_url(&self) -> &str {
        &self.shown
    }

    /// Creates proxy `name` listening on `listen` (port 0: the server picks) and forwarding to
    /// `upstream` (`host:port`), replacing a proxy of that name. Returns the address it listens on.
    pub async fn create_proxy(
        &self,
        name: &str,
        listen: SocketAddr,
        upstream: &str,
    ) -> Result<SocketAddr, ToxiproxyError> {
        let action = format!("creating proxy {name:?}");
        let body = json!({
            "name": name,
            "listen": listen.to_string(),
            "upstream": upstream,
            "enabled": true,
        });
        let created = match self
            .call(Method::POST, "/proxies", Some(&body), &action)
            .await
        {
            Err(err) if err.status() == Some(StatusCode::CONFLICT.as_u16()) => {
                self.delete_proxy(name).await?;
                self.call(Method::POST, "/proxies", Some(&body), &action)
                    .await?
            }
            other => other?,
        };
        created
            .get("listen")
            .and_then(Value::as_str)
            .and_then(|listen| listen.parse().ok())
            .ok_or_else(|| self.bad_answer(&action, format!("no listen address in {created}")))
    }

    pub async fn delete_proxy(&self, name: &str) -> Result<(), ToxiproxyError> {
        let path = format!("/proxies/{}", segment(name));
        let action = format!("deleting proxy {name:?}");
        self.call(Method::DELETE, &path, None, &action).await?;
        Ok(())
    }

    /// Enables every proxy and removes every toxic, on all proxies of the server.
    pub async fn reset(&self) -> Result<(), ToxiproxyError> {
        self.call(Method::POST, "/reset", None, "resetting").await?;
        Ok(())
    }

    /// Disabled, the proxy closes its connections and refuses new ones: the service is down.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), ToxiproxyError> {
        let path = format!("/proxies/{}", segment(name));
        let verb = if enabled { "enabling" } else { "disabling" };
        let action = format!("{verb} proxy {name:?}");
        // POST rather than PATCH: servers before v2.6 know only POST.
        let body = json!({ "enabled": enabled });
        self.call(Method::POST, &path, Some(&body), &action).await?;
        Ok(())
    }

    /// Adds `toxic` on both streams of `proxy`. If the second half fails, the first is removed
    /// again, so a toxic is never left on one direction only.
    pub async fn add_toxic(&self, proxy: &str, toxic: Toxic) -> Result<(), ToxiproxyError> {
        let path = format!("/proxies/{}/toxics", segment(proxy));
        let (kind, attributes) = toxic.type_and_attributes();
        let mut added: Vec<String> = Vec::new();
        for (stream, suffix) in STREAMS {
            let name = format!("{}_{suffix}", toxic.name());
            let action = format!("adding toxic {name:?} to proxy {proxy:?}");
            let body = json!({
                "name": name,
                "type": kind,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            });
            if let Err(err) = self.call(Method::POST, &path, Some(&body), &action).await {
                for name in added {
                    let _ = self.delete_toxic(proxy, &name).await;
                }
                return Err(err);
            }
            added.push(name);
        }
        Ok(())
    }

    /// Removes both halves of the toxic named `name` (a [`Toxic::name`]) from `proxy`; tries
    /// both even if the first fails and returns the first error.
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ToxiproxyError> {
        let mut first_error = None;
        for (_, suffix) in STREAMS {
            if let Err(err) = self.delete_toxic(proxy, &format!("{name}_{suffix}")).await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        let path = format!("/proxies/{}/toxics/{}", segment(proxy), segment(toxic));
        let action = format!("removing toxic {toxic:?} from proxy {proxy:?}");
        self.call(Method::DELETE, &path, None, &action).await?;
        Ok(())
    }

    /// One request on its own connection, bounded by [`CALL_TIMEOUT`]. A 2xx answer's JSON
    /// body is returned (`null` when empty); anything else is an error carrying the server's text.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        action: &str,
    ) -> Result<Value, ToxiproxyError> {
        let exchange = self.exchange(method, path, body);
        let (status, text) = match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(source)) => {
                return Err(ToxiproxyError::Transport {
                    api: self.shown.clone(),
                    action: action.to_string(),
                    source,
                })
            }
            Err(_) => {
                return Err(ToxiproxyError::Timeout {
                    api: self.shown.clone(),
                    action: action.to_string(),
                    after: CALL_TIMEOUT,
                })
            }
        };
        let text = String::from_utf8_lossy(&text);
        if !status.is_success() {
            return Err(ToxiproxyError::Api {
                api: self.shown.clone(),
                action: action.to_string(),
                status: status.as_u16(),
                message: server_message(&text),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|err| self.bad_answer(action, format!("{err}")))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(StatusCode, Bytes)> {
        let stream = TcpStream::connect(&self.authority).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONNECTION, "close")
            .header(hyper::header::USER_AGENT, "txlab-loadgen");
        if let Some(authorization) = &self.authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let payload = match body {
            Some(body) => {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        // `Full` has an exact size, so hyper sends Content-Length (0 for an empty body).
        let request = request
            .body(Full::new(payload))
            .map_err(std::io::Error::other)?;
        let answer = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok((status, body))
        };
        // The connection is driven here, not spawned: dropping this future (a timeout) closes it.
        let (answer, _closed) = tokio::join!(answer, connection);
        answer
    }

    fn bad_answer(&self, action: &str, why: String) -> ToxiproxyError {
        ToxiproxyError::BadAnswer {
            api: self.shown.clone(),
            action: action.to_string(),
            why,
        }
    }
}

/// The `error` field of Toxiproxy's `{"error": ..., "status": ...}`, else the text itself
/// (shortened: a reverse proxy may answer with a whole HTML page).
fn server_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text.trim()).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
    {
        Some(message) => message.to_string(),
        None => text.trim().chars().take(300).collect(),
    }
}

/// `http://user:password@host` → `http://user:***@host`, for a URL that did not parse.
fn redact_http(url: &str) -> String {
    let Some(rest) = url.strip_prefix("http://") else {
        return common::storage::redact(url);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("http://{}:***{}", &rest[..colon], &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A path segment with everything but unreserved characters percent-encoded (names may hold
/// `↔`, spaces or `/`).
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Undoes `%XX` escapes (URL userinfo); a malformed escape is kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts_the_api_url() {
        let api = Toxiproxy::new("http://lab:s%40cret@toxi.example:8474/tp/").unwrap();
        assert_eq!(api.authority, "toxi.example:8474");
        assert_eq!(api.prefix, "/tp");
        assert_eq!(api.api_url(), "http://lab:***@toxi.example:8474/tp");
        let expected = base64::engine::general_purpose::STANDARD.encode("lab:s@cret");
        assert_eq!(api.authorization, Some(format!("Basic {expected}")));
        assert_eq!(
            Toxiproxy::new("http://[::1]").unwrap().authority,
            "[::1]:80"
        );
        let err = Toxiproxy::new("https://lab:secret@host").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(redact_http("http://a:b@h/x@y"), "http://a:***@h/x@y");
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(segment("payment↔broker"), "payment%E2%86%94broker");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn prefers_the_servers_error_field() {
        assert_eq!(
            server_message("{\"error\":\"proxy not found\",\"status\":404}\n"),
            "proxy not found"
        );
        assert_eq!(server_message("  Bad Gateway \n"), "Bad Gateway");
    }
}
