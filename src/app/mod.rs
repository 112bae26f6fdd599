//! Wiring: builds the services from Settings for `mft run` (scheduler, Telegram bot, status
//! page, all sending Commands to the one [`handler::Handler`]) and `mft kill`.
//!
//! [`run_with`] is the service itself with its clock and shutdown injected, so the end-to-end
//! tests drive exactly what `mft run` runs; [`run`] adds the signal handling.

pub mod backtest_job;
pub mod handler;

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

pub use handler::kill_from_cli;

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

    // Bind the status page before announcing the start, so a busy port fails the start.
    let web_listener = crate::web::bind(&settings.status.addr).await?;
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
    let web = tokio::spawn(crate::web::serve_on(
        web_listener,
        sink.clone(),
        settings.status.token.clone(),
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
    store.close().await;
    bot_result?;
    match web_result {
        Ok(r) => r?,
        Err(e) => tracing::error!(error = %e, "status page task failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
