//! The HTTP side of the OCI distribution API for one registry and credential: GETs of
//! manifests, blobs and referrers, the token flow, redirects checked hop by hop against
//! [`destination`](crate::destination), and bodies counted while they stream against the caps
//! of [`limits`](crate::limits). What the registry said when it failed is logged, never
//! returned: [`FetchError`] carries only what a fixed message needs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use crate::destination::{classify, host_class, AddressClass, Origin, Refusal};
use crate::limits::{MAX_ERROR_BODY_BYTES, MAX_REDIRECTS, MAX_TOKEN_BYTES};

/// Why a registry request gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("not found")]
    NotFound,
    #[error("credentials refused")]
    Unauthorized,
    #[error("throttled")]
    Throttled,
    #[error("server error (HTTP {0})")]
    Server(u16),
    #[error("unexpected answer (HTTP {0})")]
    Status(u16),
    #[error("unreachable")]
    Unreachable,
    #[error("timed out")]
    TimedOut,
    #[error("{what} too large (more than {cap} bytes)")]
    TooLarge { what: &'static str, cap: usize },
    #[error("redirect or token realm refused: {0}")]
    Refused(Refusal),
    #[error("unusable answer: {0}")]
    Protocol(&'static str),
}

impl FetchError {
    /// The `kind` label of `zastava_registry_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::NotFound => "not_found",
            FetchError::Unauthorized => "unauthorized",
            FetchError::Throttled => "throttled",
            FetchError::Server(_) => "server_error",
            FetchError::Unreachable => "unreachable",
            FetchError::TimedOut => "timeout",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Refused(_) => "refused",
            FetchError::Status(_) | FetchError::Protocol(_) => "protocol",
        }
    }
}

/// One registry spoken to with one credential.
pub struct Endpoint {
    registry: String,
    base: Url,
    origin: Origin,
    http: reqwest::Client,
    auth: RegistryAuth,
    /// Bearer tokens by scope, with when they expire.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The registry answered a referrers API request with 404 where a referrers tag exists:
    /// it has no such API (see [`crate::Registry::facts`]).
    no_referrers_api: AtomicBool,
}

impl Endpoint {
    /// `insecure`: the registry was listed for plain HTTP. The registry's own address class is
    /// what its host is (an IP literal) or resolves to.
    pub async fn new(
        registry: &str,
        insecure: bool,
        allow_internal: bool,
        timeout: Duration,
        auth: RegistryAuth,
    ) -> Result<Self, FetchError> {
        let host = if registry == "docker.io" {
            "index.docker.io"
        } else {
            registry
        };
        let scheme = if insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|_| FetchError::Protocol("registry name is not a host"))?;
        let class = match base.host_str().and_then(host_class) {
            Some(class) => class,
            None => {
                let port = base.port_or_known_default().unwrap_or(443);
                let name = base.host_str().unwrap_or_default().to_string();
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|e| {
                        tracing::warn!(%registry, error = %e, "cannot resolve the registry");
                        FetchError::Unreachable
                    })?
                    .collect();
                // The least public class among its addresses: a name that resolves to a
                // private address as well is on a private network.
                addrs
                    .iter()
                    .map(|a| classify(a.ip()))
                    .find(|c| *c != AddressClass::Public)
                    .unwrap_or(AddressClass::Public)
            }
        };
        let origin = Origin {
            registry: class,
            allow_internal,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(Guarded(origin)))
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|_| FetchError::Protocol("cannot build an HTTP client"))?;
        Ok(Self {
            registry: registry.to_string(),
            base,
            origin,
            http,
            auth,
            tokens: Mutex::new(HashMap::new()),
            no_referrers_api: AtomicBool::new(false),
        })
    }

    /// Whether the registry was seen to lack the referrers API.
    pub fn lacks_referrers_api(&self) -> bool {
        self.no_referrers_api.load(Ordering::Relaxed)
    }

    /// Remembers that the registry lacks the referrers API.
    pub fn set_lacks_referrers_api(&self) {
        self.no_referrers_api.store(true, Ordering::Relaxed);
    }

    /// `GET /v2/<path>` with `accept`, its body read up to `cap` bytes (`what` names it for
    /// the error). The pull scope of `repository` is asked for when the registry challenges.
    pub async fn get(
        &self,
        repository: &str,
        path: &str,
        accept: &[&str],
        cap: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, FetchError> {
        let response = self
            .request(Method::GET, repository, path, accept, what)
            .await?;
        read_capped(response, cap, what).await
    }

    /// The `Docker-Content-Digest` a `HEAD /v2/<path>` answers with, if it gives one: a tag's
    /// digest without downloading (or, on Docker Hub, counting a pull of) the manifest.
    pub async fn head_digest(
        &self,
        repository: &str,
        path: &str,
        accept: &[&str],
    ) -> Result<Option<String>, FetchError> {
        let response = self
            .request(Method::HEAD, repository, path, accept, "manifest")
            .await?;
        Ok(response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| {
                d.strip_prefix("sha256:").is_some_and(|hex| {
                    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
                })
            })
            .map(String::from))
    }

    /// Sends `method` to `/v2/<path>`, answering one challenge; the successful response.
    async fn request(
        &self,
        method: Method,
        repository: &str,
        path: &str,
        accept: &[&str],
        what: &'static str,
    ) -> Result<reqwest::Response, FetchError> {
        let url = self
            .base
            .join(&format!("v2/{repository}/{path}"))
            .map_err(|_| FetchError::Protocol("unusable repository or reference"))?;
        let scope = format!("repository:{repository}:pull");
        let mut authorization = self.authorization(&scope);
        for attempt in 0..2 {
            let response = self
                .follow(&method, &url, accept, authorization.as_ref())
                .await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                self.log_error_body(response, "challenge").await;
                if let Some(challenge) = challenge {
                    authorization = Some(self.answer(&challenge, &scope).await?);
                    continue;
                }
                return Err(FetchError::Unauthorized);
            }
            let error = match status.as_u16() {
                404 => FetchError::NotFound,
                401 | 403 => FetchError::Unauthorized,
                429 => FetchError::Throttled,
                code @ 500..=599 => FetchError::Server(code),
                code => FetchError::Status(code),
            };
            if error != FetchError::NotFound {
                self.log_error_body(response, what).await;
            }
            return Err(error);
        }
        Err(FetchError::Unauthorized)
    }

    /// Sends the GET and follows redirects, each hop checked before it is taken; credentials
    /// go only to the registry's own host.
    async fn follow(
        &self,
        method: &Method,
        start: &Url,
        accept: &[&str],
        authorization: Option<&HeaderValue>,
    ) -> Result<reqwest::Response, FetchError> {
        let mut url = start.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.http.request(method.clone(), url.clone());
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            if let Some(value) = authorization.filter(|_| same_origin(&url, &self.base)) {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(|e| self.transport(&e))?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or(FetchError::Protocol("redirect without a usable Location"))?;
            self.origin.check(&url, &next).map_err(|refusal| {
                tracing::warn!(registry = %self.registry, from = %url, to = %next, %refusal,
                    "registry redirect not followed");
                FetchError::Refused(refusal)
            })?;
            url = next;
        }
        Err(FetchError::Refused(Refusal::TooManyRedirects))
    }

    /// The Authorization header to send before any challenge: a given bearer token, or a
    /// token obtained earlier for `scope`.
    fn authorization(&self, scope: &str) -> Option<HeaderValue> {
        if let RegistryAuth::Bearer(token) = &self.auth {
            if !token.is_empty() {
                return HeaderValue::from_str(&format!("Bearer {token}")).ok();
            }
        }
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let (token, until) = tokens.get(scope)?;
        (Instant::now() < *until)
            .then(|| HeaderValue::from_str(&format!("Bearer {token}")).ok())
            .flatten()
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the credentials, or a token from
    /// the Bearer realm (which must pass the same rules as a redirect).
    async fn answer(&self, challenge: &str, scope: &str) -> Result<HeaderValue, FetchError> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = match &self.auth {
            RegistryAuth::Basic(user, password) => Some((user.clone(), password.clone())),
            _ => None,
        };
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = basic.ok_or(FetchError::Unauthorized)?;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            return HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|_| FetchError::Protocol("unusable credentials"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(FetchError::Unauthorized);
        }
        let realm = params
            .get("realm")
            .and_then(|r| Url::parse(r).ok())
            .ok_or(FetchError::Protocol("challenge without a usable realm"))?;
        self.origin.check(&self.base, &realm).map_err(|refusal| {
            tracing::warn!(registry = %self.registry, %realm, %refusal, "token realm not used");
            FetchError::Refused(refusal)
        })?;
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", params.get("scope").map_or(scope, String::as_str));
        }
        let mut request = self.http.get(url);
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        if !response.status().is_success() {
            let status = response.status();
            self.log_error_body(response, "token").await;
            return Err(if status.is_server_error() {
                FetchError::Server(status.as_u16())
            } else {
                FetchError::Unauthorized
            });
        }
        let body = read_capped(response, MAX_TOKEN_BYTES, "token response").await?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| FetchError::Protocol("token response is not JSON"))?;
        let token = value["token"]
            .as_str()
            .or_else(|| value["access_token"].as_str())
            .ok_or(FetchError::Protocol("token response without a token"))?
            .to_string();
        let lifetime = value["expires_in"].as_u64().unwrap_or(60).clamp(10, 3600);
        let header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| FetchError::Protocol("unusable token"))?;
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                scope.to_string(),
                (token, Instant::now() + Duration::from_secs(lifetime - 5)),
            );
        Ok(header)
    }

    fn transport(&self, error: &reqwest::Error) -> FetchError {
        tracing::warn!(registry = %self.registry, error = %error, "registry request failed");
        if error.is_timeout() {
            FetchError::TimedOut
        } else {
            FetchError::Unreachable
        }
    }

    /// Logs (a capped prefix of) an error answer's body: for the operator, never the user.
    async fn log_error_body(&self, response: reqwest::Response, what: &str) {
        let status = response.status();
        let body = read_capped(response, MAX_ERROR_BODY_BYTES, "error body").await;
        let text = match &body {
            Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(registry = %self.registry, %status, what, body = %text,
            "registry answered with an error");
    }
}

/// Reads a response body, failing as soon as more than `cap` bytes arrived, whatever the
/// response declared.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    what: &'static str,
) -> Result<Vec<u8>, FetchError> {
    if response.content_length().is_some_and(|l| l > cap as u64) {
        return Err(FetchError::TooLarge { what, cap });
    }
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > cap {
                    return Err(FetchError::TooLarge { what, cap });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) if e.is_timeout() => return Err(FetchError::TimedOut),
            Err(_) => return Err(FetchError::Unreachable),
        }
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `Bearer realm="...",service="...",scope="..."` as the scheme and its parameters.
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

/// Resolves names and drops the addresses [`Origin::permits`] refuses, so a redirect or a
/// realm given by name cannot reach an internal address either (also after a DNS change).
struct Guarded(Origin);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let origin = self.0;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| origin.permits(classify(a.ip())))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{} has no address the webhook may connect to",
                    name.as_str()
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/nginx:pull");
        let (scheme, params) = parse_challenge("Basic realm=registry");
        assert_eq!(
            (scheme.as_str(), params["realm"].as_str()),
            ("Basic", "registry")
        );
        let (_, params) = parse_challenge("Bearer realm=\"unterminated");
        assert_eq!(params["realm"], "unterminated");
    }
}
