//! The HTTP client the OpenID Connect and OAuth 2.0 flows use (`openidconnect`'s
//! [`AsyncHttpClient`]): the service's own reqwest client, so discovery, key sets and token
//! exchanges follow the same rules as every other outbound request — no redirects, a time-out,
//! and bodies read through [`read_capped`].

use std::{future::Future, pin::Pin, time::Duration};

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

use super::read_capped;

/// Longest discovery document, key set or token response read from an identity provider.
const MAX_BODY_BYTES: u64 = 512 * 1024;

/// Why a request to an identity provider or authorization server got no answer.
#[derive(Debug, thiserror::Error)]
pub enum OAuthHttpError {
    #[error("cannot reach the server: {0}")]
    Transport(String),
    #[error("the answer cannot be read: {0}")]
    Body(#[from] super::BodyError),
}

/// Plugs a [`reqwest::Client`] built without redirects into `openidconnect`.
#[derive(Clone)]
pub struct OAuthHttp {
    http: reqwest::Client,
    timeout: Duration,
}

impl OAuthHttp {
    pub fn new(http: reqwest::Client, timeout: Duration) -> OAuthHttp {
        OAuthHttp { http, timeout }
    }
}

impl<'c> AsyncHttpClient<'c> for OAuthHttp {
    type Error = OAuthHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, OAuthHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = self
                .http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| OAuthHttpError::Transport(e.without_url().to_string()))?;
            let mut answer = openidconnect::http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = read_capped(response, MAX_BODY_BYTES).await?;
            answer.body(body).map_err(|e| OAuthHttpError::Transport(e.to_string()))
        })
    }
}
