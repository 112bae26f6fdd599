//! `mft kill` from the command line. While `mft run` holds the database (the service lock),
//! the kill is sent to that service's local endpoint (POST /kill on the status server, bearer
//! STATUS_TOKEN or the secret of the 0600 token file the service wrote), so it runs inside the
//! service exactly like /kill in Telegram, alert included. With no service running it acts
//! directly, under the database's book lock ([`super::handler::kill_directly`]).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::ports::KillReport;
use crate::store::{ServiceInstance, Store};

use super::handler::{HandlerError, kill_directly};

/// How long `mft kill` waits for the holder of the service lock to show an endpoint (another
/// `mft kill` probing, or a service still starting) before giving up.
const FIND_SERVICE_FOR: Duration = Duration::from_secs(15);

/// Why `mft kill` could not hand the kill to the service that holds the database. Each text
/// says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ServiceKillError {
    #[error(
        "the database is held by another mft process that shows no kill endpoint; \
         retry in a moment, or use /kill in Telegram"
    )]
    NoEndpoint,
    #[error(
        "the running service (pid {pid}, status address {addr}) could not be reached: its token \
         file {path} is unreadable ({reason}); run mft kill as the user running mft run, or set \
         STATUS_TOKEN"
    )]
    NoToken {
        pid: i64,
        addr: String,
        path: String,
        reason: String,
    },
    #[error(
        "the running service (pid {pid}, status address {addr}) could not be reached at {url}: \
         {source}; use /kill in Telegram"
    )]
    Unreachable {
        pid: i64,
        addr: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the running service (pid {pid}, status address {addr}) answered {status} with an \
         unreadable body: {source}; use /kill in Telegram"
    )]
    UnreadableAnswer {
        pid: i64,
        addr: String,
        status: u16,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the running service (pid {pid}, status address {addr}) sent a kill report this mft \
         cannot read: {source}; use /kill in Telegram"
    )]
    UnreadableReport {
        pid: i64,
        addr: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the running service (pid {pid}, status address {addr}) refused the kill ({status}): \
         {reason}; use /kill in Telegram"
    )]
    Refused {
        pid: i64,
        addr: String,
        status: u16,
        reason: String,
    },
}

impl ServiceKillError {
    /// Whether running `mft kill` again may work without anyone changing anything: the service
    /// was starting, busy or briefly unreachable.
    pub fn is_recoverable(&self) -> bool {
        match self {
            ServiceKillError::NoEndpoint | ServiceKillError::Unreachable { .. } => true,
            ServiceKillError::UnreadableAnswer { status, .. }
            | ServiceKillError::Refused { status, .. } => *status >= 500 && *status != 501,
            ServiceKillError::NoToken { .. } | ServiceKillError::UnreadableReport { .. } => false,
        }
    }
}

/// How `mft kill` ran.
#[derive(Debug, Clone, PartialEq)]
pub enum KillRoute {
    /// Sent to the running service (pid) at its status address.
    Service { pid: i64, addr: String },
    /// No service ran: done by this process.
    Direct,
}

/// `mft kill`: through the running service if there is one, else directly (in MODE=live with
/// the Kite broker and the stored login session).
pub async fn kill_from_cli(settings: Arc<Settings>) -> Result<KillReport, HandlerError> {
    kill_from_cli_routed(settings).await.map(|(r, _)| r)
}

/// [`kill_from_cli`], also saying which way it went.
pub async fn kill_from_cli_routed(
    settings: Arc<Settings>,
) -> Result<(KillReport, KillRoute), HandlerError> {
    let store = Store::connect(&settings.database_url).await?;
    let result = route(&settings, &store).await;
    store.close().await;
    result
}

async fn route(
    settings: &Arc<Settings>,
    store: &Store,
) -> Result<(KillReport, KillRoute), HandlerError> {
    let deadline = tokio::time::Instant::now() + FIND_SERVICE_FOR;
    loop {
        // Probe: if the lock is free no service runs; give it back at once (the kill itself
        // is serialized by the book lock, and a service may start meanwhile).
        if let Some(lock) = store.try_lock_service().await? {
            lock.release().await;
            let report = kill_directly(settings.clone(), store.clone()).await?;
            return Ok((report, KillRoute::Direct));
        }
        if let Some(instance) = store.service_instance().await?
            && let (Some(addr), Some(_)) = (&instance.status_addr, &instance.token_path)
        {
            let report = via_service(settings, &instance, addr).await?;
            return Ok((
                report,
                KillRoute::Service {
                    pid: instance.pid,
                    addr: addr.clone(),
                },
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServiceKillError::NoEndpoint.into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The address to connect to for a bound status address (0.0.0.0 / [::] mean this host).
fn connect_addr(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(sa) if sa.ip().is_unspecified() => {
            let ip: std::net::IpAddr = if sa.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(ip, sa.port()).to_string()
        }
        _ => addr.to_string(),
    }
}

async fn via_service(
    settings: &Settings,
    instance: &ServiceInstance,
    addr: &str,
) -> Result<KillReport, HandlerError> {
    let (pid, addr) = (instance.pid, addr.to_string());
    // The token file first (the CLI's own credential: the kill is recorded as `cli`), then
    // STATUS_TOKEN when this shell has it (sent as the dashboard's confirmed Kill form).
    let mut tokens: Vec<String> = Vec::new();
    let path = instance.token_path.clone().unwrap_or_default();
    let file_error = match std::fs::read_to_string(&path) {
        Ok(t) => {
            tokens.push(t.trim().to_string());
            None
        }
        Err(e) => Some(e),
    };
    if let Some(t) = settings
        .status
        .token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
    {
        tokens.push(t.expose().to_string());
    }
    if tokens.is_empty() {
        return Err(ServiceKillError::NoToken {
            pid,
            addr,
            path,
            reason: file_error.map(|e| e.to_string()).unwrap_or_default(),
        }
        .into());
    }
    let url = format!("http://{}/kill", connect_addr(&addr));
    let unreached = |source| ServiceKillError::Unreachable {
        pid,
        addr: addr.clone(),
        url: url.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(unreached)?;
    let mut resp = None;
    for token in &tokens {
        let r = client
            .post(&url)
            .bearer_auth(token)
            .form(&[("confirm", "yes")])
            .send()
            .await
            .map_err(unreached)?;
        let unauthorized = matches!(
            r.status(),
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
        );
        resp = Some(r);
        if !unauthorized {
            break;
        }
    }
    let Some(resp) = resp else {
        return Err(ServiceKillError::NoToken {
            pid,
            addr,
            path,
            reason: "no token to send".into(),
        }
        .into());
    };
    let status = resp.status().as_u16();
    let body: serde_json::Value =
        resp.json()
            .await
            .map_err(|source| ServiceKillError::UnreadableAnswer {
                pid,
                addr: addr.clone(),
                status,
                source,
            })?;
    // The kill endpoint answers {"report": ..}; the dashboard's Kill (STATUS_TOKEN) answers
    // {"ok", "message", "reply": {"Killed": ..}}.
    if let Some(report) = body.get("report").or_else(|| body.pointer("/reply/Killed")) {
        return serde_json::from_value(report.clone()).map_err(|source| {
            ServiceKillError::UnreadableReport {
                pid,
                addr: addr.clone(),
                source,
            }
            .into()
        });
    }
    let error = body
        .get("error")
        .or_else(|| body.get("message"))
        .and_then(|e| e.as_str())
        .unwrap_or("no reason given");
    Err(ServiceKillError::Refused {
        pid,
        addr,
        status,
        reason: error.to_string(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_kill_errors_say_what_to_do_and_whether_to_retry() {
        let e = ServiceKillError::Refused {
            pid: 42,
            addr: "127.0.0.1:8501".into(),
            status: 409,
            reason: "already halted".into(),
        };
        assert_eq!(
            e.to_string(),
            "the running service (pid 42, status address 127.0.0.1:8501) refused the kill (409): \
             already halted; use /kill in Telegram"
        );
        assert!(!e.is_recoverable());
        assert!(ServiceKillError::NoEndpoint.is_recoverable());
        let busy = ServiceKillError::Refused {
            pid: 42,
            addr: "127.0.0.1:8501".into(),
            status: 503,
            reason: "database busy".into(),
        };
        assert!(busy.is_recoverable());
        let e = ServiceKillError::NoToken {
            pid: 42,
            addr: "127.0.0.1:8501".into(),
            path: "/run/mft/kill.token".into(),
            reason: "permission denied".into(),
        };
        assert!(
            e.to_string()
                .contains("run mft kill as the user running mft run")
        );
        assert!(!e.is_recoverable());
    }

    #[test]
    fn unspecified_addresses_connect_to_localhost() {
        assert_eq!(connect_addr("0.0.0.0:8501"), "127.0.0.1:8501");
        assert_eq!(connect_addr("[::]:8501"), "[::1]:8501");
        assert_eq!(connect_addr("127.0.0.1:9"), "127.0.0.1:9");
    }
}
