//! A blocking client of a running daemon's HTTP API, for the CLI: while
//! the daemon holds a database, `imgdb query`, `stats`, `ingest`, `rm`,
//! `tag` and `failures` send their requests here instead of opening it.
//!
//! It finds the daemon through the address file ([`Address`]), talks plain
//! HTTP to a loopback address only (the token it sends must never cross a
//! network unencrypted) and returns the API's JSON as it is, so that the
//! CLI prints the objects the API made. Errors keep the API's `kind` and
//! message ([`ClientError::Api`]). This module owns no output and no exit
//! codes: those are the CLI's.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::address::Address;
use crate::json::path_json;

/// How long the liveness probe of [`Client::connect`] may take: a daemon
/// that does not answer this fast is treated as absent.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long connecting may take for the other requests (loopback: a
/// listening daemon accepts at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address file names a URL that is not `http://` on a loopback
    /// address.
    #[error("the daemon's address {url} is not a loopback http:// URL")]
    NotLoopback {
        /// The URL of the address file.
        url: String,
    },
    /// The daemon could not be reached, or the connection broke.
    #[error("cannot reach the imgdb daemon at {url}")]
    Unreachable {
        /// The daemon's base URL.
        url: String,
        /// ureq's transport error.
        #[source]
        source: Box<ureq::Transport>,
    },
    /// The API answered an error (`{"error": {"kind", "message"}}`).
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error's kind: a library kind (`not_found`, `invalid_input`,
        /// …) or an HTTP one (`forbidden`, `unauthorized`, `timeout`, …).
        kind: String,
        /// The API's message.
        message: String,
    },
    /// The answer is not the JSON the API documents.
    #[error("the imgdb daemon at {url} answered {what} with an unexpected body")]
    BadResponse {
        /// The daemon's base URL.
        url: String,
        /// The request (`GET /v1/stats`).
        what: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
}

/// One daemon's API.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    pid: u32,
    agent: ureq::Agent,
}

/// What the failed-request helpers need to build a [`ClientError`].
type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client of the daemon at `address`, which must be a loopback
    /// `http://` URL (checked here, before any request).
    pub fn new(address: &Address) -> Result<Client> {
        let base = address.url.trim_end_matches('/').to_string();
        if !is_loopback_http(&base) {
            return Err(ClientError::NotLoopback { url: base });
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .try_proxy_from_env(false)
            .redirects(0)
            .build();
        Ok(Client {
            base,
            token: address.token.clone(),
            pid: address.pid,
            agent,
        })
    }

    /// The daemon that holds the database at `db`, if one runs: its
    /// address file is read, its process must be alive, and it must answer
    /// `GET /healthz` within [`PROBE_TIMEOUT`]. A file left by a daemon
    /// that died (or that names another machine) gives `None`.
    pub fn connect(db: &Path) -> Option<Client> {
        let address = Address::read(db)?;
        if !address.process_alive() {
            return None;
        }
        let client = Client::new(&address).ok()?;
        client.healthz().ok()?;
        Some(client)
    }

    /// The API's base URL (`http://127.0.0.1:7474`).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The daemon's process id, from its address file.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `GET /healthz`, within [`PROBE_TIMEOUT`].
    pub fn healthz(&self) -> Result<()> {
        let request = self.request("GET", "/healthz").timeout(PROBE_TIMEOUT);
        self.answer("GET /healthz", request.call()).map(drop)
    }

    /// `POST /v1/query` with a JSON body (`QueryBody` in the spec): the
    /// results, best first, each the CLI's `--json` object.
    pub fn query(&self, body: &Value) -> Result<Vec<Value>> {
        let what = "POST /v1/query";
        let answer = self.answer(what, self.request("POST", "/v1/query").send_json(body))?;
        self.array(what, answer, "results")
    }

    /// `GET /v1/stats`: the object `imgdb stats --json` prints.
    pub fn stats(&self) -> Result<Value> {
        self.get("/v1/stats")
    }

    /// `GET /v1/status`: the database's, the indexer's and the roots'
    /// figures.
    pub fn status(&self) -> Result<Value> {
        self.get("/v1/status")
    }

    /// `POST /v1/ingest`: queues absolute paths under the watched roots;
    /// how many were queued.
    pub fn ingest(&self, paths: &[PathBuf]) -> Result<u64> {
        self.post_paths("/v1/ingest", paths, "queued")
    }

    /// `POST /v1/remove`: unlinks indexed files and what is indexed under
    /// folders (absolute paths); how many files were removed.
    pub fn remove(&self, paths: &[PathBuf]) -> Result<u64> {
        self.post_paths("/v1/remove", paths, "removed")
    }

    /// `POST /v1/tag`: labels every image zero-shot; how many were tagged.
    pub fn tag(
        &self,
        labels: &[String],
        template: &str,
        top: usize,
        min_score: f32,
    ) -> Result<u64> {
        let what = "POST /v1/tag";
        let body =
            json!({"labels": labels, "template": template, "top": top, "min_score": min_score});
        let answer = self.answer(what, self.request("POST", "/v1/tag").send_json(body))?;
        self.count(what, &answer, "tagged")
    }

    /// `GET /v1/failures?kind=K`: the CLI's `failures --json` objects.
    pub fn failures(&self, kind: Option<&str>) -> Result<Vec<Value>> {
        let what = "GET /v1/failures";
        let mut request = self.request("GET", "/v1/failures");
        if let Some(kind) = kind {
            request = request.query("kind", kind);
        }
        let answer = self.answer(what, request.call())?;
        self.array(what, answer, "failures")
    }

    fn get(&self, path: &str) -> Result<Value> {
        let what = format!("GET {path}");
        self.answer(&what, self.request("GET", path).call())
    }

    fn post_paths(&self, path: &str, paths: &[PathBuf], field: &str) -> Result<u64> {
        let what = format!("POST {path}");
        let body = json!({"paths": paths.iter().map(|p| path_json(p)).collect::<Vec<_>>()});
        let answer = self.answer(&what, self.request("POST", path).send_json(body))?;
        self.count(&what, &answer, field)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// The JSON of a successful answer, or the error the API or the
    /// connection gave.
    fn answer(
        &self,
        what: &str,
        sent: std::result::Result<ureq::Response, ureq::Error>,
    ) -> Result<Value> {
        match sent {
            Ok(response) => response
                .into_json::<Value>()
                .map_err(|source| self.bad(what, source)),
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response
                    .into_json()
                    .map_err(|source| self.bad(what, source))?;
                let field = |name: &str| body["error"][name].as_str().map(str::to_string);
                match (field("kind"), field("message")) {
                    (Some(kind), Some(message)) => Err(ClientError::Api {
                        status,
                        kind,
                        message,
                    }),
                    _ => Err(self.bad(
                        what,
                        std::io::Error::other(format!("status {status} without the error shape")),
                    )),
                }
            }
            Err(ureq::Error::Transport(source)) => Err(ClientError::Unreachable {
                url: self.base.clone(),
                source: Box::new(source),
            }),
        }
    }

    fn array(&self, what: &str, mut answer: Value, field: &str) -> Result<Vec<Value>> {
        match answer.get_mut(field).map(Value::take) {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(self.missing(what, field)),
        }
    }

    fn count(&self, what: &str, answer: &Value, field: &str) -> Result<u64> {
        answer[field]
            .as_u64()
            .ok_or_else(|| self.missing(what, field))
    }

    fn missing(&self, what: &str, field: &str) -> ClientError {
        self.bad(
            what,
            std::io::Error::other(format!("no `{field}` in the answer")),
        )
    }

    fn bad(&self, what: &str, source: std::io::Error) -> ClientError {
        ClientError::BadResponse {
            url: self.base.clone(),
            what: what.to_string(),
            source,
        }
    }
}

/// Whether `url` is `http://HOST:PORT` with a loopback IP (or `localhost`).
fn is_loopback_http(url: &str) -> bool {
    let Some(authority) = url.strip_prefix("http://") else {
        return false;
    };
    if authority.contains('/') || authority.contains('@') {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => return false,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_urls_are_accepted() {
        for url in [
            "http://127.0.0.1:7474",
            "http://[::1]:80",
            "http://localhost:1",
        ] {
            assert!(is_loopback_http(url), "{url}");
        }
        for url in [
            "https://127.0.0.1:7474",
            "http://10.0.0.1:7474",
            "http://127.0.0.1",
            "http://127.0.0.1:7474/x",
            "http://user@127.0.0.1:1",
            "http://example.com:80",
        ] {
            assert!(!is_loopback_http(url), "{url}");
        }
    }

    #[test]
    fn a_dead_daemons_address_is_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above the kernel's limit names no process.
        let address = Address {
            version: 1,
            url: "http://127.0.0.1:9".into(),
            pid: u32::MAX,
            token: None,
        };
        address.write(dir.path()).unwrap();
        assert!(Client::connect(dir.path()).is_none());
        assert!(Client::connect(&dir.path().join("nothing")).is_none());
    }
}
