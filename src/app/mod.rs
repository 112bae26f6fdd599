//! Wiring: builds the services from Settings for `mft run` (scheduler, Telegram bot, status
//! page, all sending Commands to the one [`handler::Handler`]) and `mft kill`.
//!
//! [`run_with`] is the service itself with its clock and shutdown injected, so the end-to-end
//! tests drive exactly what `mft run` runs; [`run`] adds the signal handling.

pub mod handler;
pub mod kill;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::agents::{MetaAgent, RuleAnalyst};
use crate::bot::{BotConfig, BotError, TelegramNotifier};
use crate::clock::{Clock, SystemClock};
use crate::config::{Mode, Settings};
use crate::jobs::{Job, JobError, Scheduler};
use crate::oms::PaperBroker;
use crate::ports::CommandHandler;
use crate::ports::{Alert, Notifier};
use crate::store::{Store, StoreError};
use handler::{Handler, HandlerError};

pub use kill::{KillRoute, kill_from_cli, kill_from_cli_routed};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Bot(#[from] BotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schedule(#[from] JobError),
    #[error("start-up recovery failed: {0}")]
    Recover(#[from] HandlerError),
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
    #[error(
        "MODE=live is not available in this version: the Kite live broker is not built yet. Set MODE=paper"
    )]
    LiveNotAvailable,
    #[error(
        "cannot write the kill token file {path}: {error}; check the data folder's permissions"
    )]
    KillToken { path: String, error: String },
}

/// `mft run`: runs the service until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), AppError> {
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping");
        on_signal.cancel();
    });
    run_with(Arc::new(settings), Arc::new(SystemClock), shutdown).await
}

/// The kill endpoint's secret and the file `mft kill` reads it from.
struct KillToken {
    secret: String,
    path: std::path::PathBuf,
}

/// Writes a fresh random kill token to a file only this user can read (0600): beside a SQLite
/// database (`<db>.kill-token`), else `data/mft.kill-token` under the working folder; records
/// it and the status server's address in `service_instance` for `mft kill`.
async fn write_kill_token(
    store: &Store,
    listener: &tokio::net::TcpListener,
) -> Result<KillToken, AppError> {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let path = match store.sqlite_path() {
        Some(db) => {
            let mut name = db.file_name().unwrap_or_default().to_os_string();
            name.push(".kill-token");
            db.with_file_name(name)
        }
        None => std::path::Path::new("data").join("mft.kill-token"),
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    let io = |e: std::io::Error| AppError::KillToken {
        path: path.display().to_string(),
        error: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Replace, never follow, whatever is there; create it 0600 before the secret is written.
    let _ = std::fs::remove_file(&path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io)?;
    std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(io)?;
    let addr = listener.local_addr().map(|a| a.to_string()).map_err(io)?;
    store
        .set_service_endpoint(&addr, &path.display().to_string())
        .await?;
    Ok(KillToken { secret, path })
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the service");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The service: checks the Telegram settings, opens the store, recovers in-flight work, then
/// runs the bot, the scheduler and the status page until `shutdown` is cancelled. On shutdown
/// in-flight commands finish, polling stops and the database is closed.
pub async fn run_with(
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    // Fail on what the operator must set before touching anything else.
    let bot_config = BotConfig::from_settings(&settings.telegram)?;
    if settings.mode == Mode::Live {
        return Err(AppError::LiveNotAvailable);
    }
    let scheduler = Arc::new(Scheduler::from_settings(
        &settings.schedules,
        clock.clone(),
    )?);
    let store = Store::connect(&settings.database_url).await?;
    // One service per database: a second one would "recover" the first one's in-flight work.
    let service_lock = match store.lock_service(std::process::id(), clock.now()).await {
        Ok(lock) => lock,
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    };

    let notifier: Arc<dyn Notifier> = Arc::new(TelegramNotifier::from_config(
        &bot_config,
        settings.trading.capital,
    )?);
    let analyst = Arc::new(RuleAnalyst::with_clock(
        settings.strategy.clone(),
        clock.clone(),
    ));
    let scanner = Arc::new(MetaAgent::new(
        store.clone(),
        analyst,
        settings.clone(),
        clock.clone(),
    ));
    let broker = Arc::new(PaperBroker::new(
        store.clone(),
        settings.clone(),
        clock.clone(),
    ));
    let next_scan = scheduler.clone();
    let handler = Arc::new(
        Handler::new(
            store.clone(),
            settings.clone(),
            clock.clone(),
            broker,
            notifier.clone(),
            scanner,
        )
        .with_next_scan(Arc::new(move || next_scan.next_fire(Job::Scan))),
    );
    let settled = handler.recover().await?;
    if settled > 0 {
        tracing::warn!(settled, "settled proposals left undecided by the last run");
    }
    let reposted = handler.repost_unposted().await?;
    if reposted > 0 {
        tracing::warn!(
            reposted,
            "pending proposals without a card were re-posted or expired"
        );
    }

    // Bind the status page before announcing the start, so a busy port fails the start.
    let web_listener = crate::web::bind(&settings.status.addr).await?;
    let kill_token = write_kill_token(&store, &web_listener).await?;
    let state = store.system_state().await?;
    let _ = notifier
        .alert(&Alert::Started {
            mode: "paper".into(),
            watchlist: settings.trading.watchlist.len(),
            halted: state.halted,
        })
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "could not send the start alert"));
    tracing::info!(
        status = %settings.status.addr,
        database = settings.database_url.split(':').next().unwrap_or(""),
        "MFT-1 running in paper mode"
    );

    let sink: Arc<dyn CommandHandler> = handler.clone();
    let web = tokio::spawn(crate::web::serve_on_with_kill_token(
        web_listener,
        sink.clone(),
        settings.status.token.clone(),
        Some(crate::config::Secret::new(kill_token.secret.clone())),
        shutdown.clone(),
    ));
    let jobs = tokio::spawn(scheduler.run(sink.clone(), shutdown.clone()));
    let bot_result = crate::bot::run_bot(bot_config, sink, shutdown.clone()).await;
    // Whatever ended the bot ends the service.
    shutdown.cancel();
    let _ = jobs.await;
    let web_result = web.await;
    let _ = notifier
        .alert(&Alert::Stopping)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "could not send the stop alert"));
    let _ = std::fs::remove_file(&kill_token.path);
    store.close().await;
    service_lock.release().await;
    bot_result?;
    match web_result {
        Ok(r) => r?,
        Err(e) => tracing::error!(error = %e, "status page task failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
