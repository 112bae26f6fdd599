//! Wiring: builds the services from Settings for `mft run` (scheduler, Telegram bot, status
//! page, all sending Commands to the one [`handler::Handler`]) and `mft kill`.
//!
//! [`run_with`] is the service itself with its clock and shutdown injected, so the end-to-end
//! tests drive exactly what `mft run` runs; [`run`] adds the signal handling.

pub mod backtest_job;
pub mod handler;
pub mod kill;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::agents::{MetaAgent, RuleAnalyst};
use crate::bot::{BotConfig, BotError, TelegramNotifier};
use crate::clock::{Clock, SystemClock};
use crate::config::{Mode, Secret, Settings};
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
    #[error("the LLM analyst cannot start: {0}")]
    Analyst(String),
    #[error(
        "MODE=live does not start: /preflight has failed lines. Fix them (or set MODE=paper):\n{0}"
    )]
    LivePreflight(String),
    #[error("MODE=live cannot build the Kite broker: {0}")]
    LiveBroker(String),
    #[error(
        "cannot write the kill token file {path}: {error}; check the data folder's permissions"
    )]
    KillToken { path: String, error: String },
    #[error(transparent)]
    Session(#[from] crate::market::SessionError),
    #[error(transparent)]
    Holidays(#[from] crate::market::HolidayError),
}

/// Where the dashboard's generated STATUS_TOKEN is kept (`generated_secrets`).
pub const GENERATED_TOKEN: &str = "status_token";

/// A bot token is set (the chat settings are then required).
fn telegram_configured(settings: &Settings) -> bool {
    settings
        .telegram
        .bot_token
        .as_ref()
        .is_some_and(|t| !t.expose().is_empty())
}

/// `0.0.0.0:8501` -> `127.0.0.1:8501`: an address a browser on this machine can open.
fn browsable(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(ip, a.port()).to_string()
        }
        _ => addr.to_string(),
    }
}

/// Connects to the market: the NSE calendar (seeded on first use), the Kite session provider
/// and an empty live-price cache.
pub async fn market_link(
    store: &Store,
    settings: &Arc<Settings>,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<crate::market::MarketLink>, AppError> {
    let calendar = Arc::new(crate::market::MarketCalendar::load(store).await?);
    let session = Arc::new(
        crate::market::SessionProvider::load(store.clone(), settings.clone(), clock.clone())
            .await?,
    );
    Ok(Arc::new(crate::market::MarketLink {
        calendar,
        session,
        prices: Arc::new(crate::market::PriceCache::new()),
    }))
}

/// A handler for one-shot CLI commands (`mft login`, `mft preflight`): paper broker, alerts
/// only logged, connected to the market without the ticker.
pub async fn cli_handler(settings: Arc<Settings>) -> Result<(Arc<Handler>, Store), AppError> {
    let store = Store::connect(&settings.database_url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let link = market_link(&store, &settings, &clock).await?;
    let broker = Arc::new(
        PaperBroker::new(store.clone(), settings.clone(), clock.clone())
            .with_live_prices(link.prices.clone()),
    );
    let handler = Handler::new(
        store.clone(),
        settings,
        clock,
        broker,
        Arc::new(handler::LogNotifier),
        Arc::new(handler::NoScanner),
    )
    .with_market(link);
    Ok((Arc::new(handler), store))
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
    // Fail on what the operator must set before touching anything else. Without a bot token
    // the dashboard is the operator's interface (issue 12); a token with missing chat settings
    // is still an error.
    let bot_config = if telegram_configured(&settings) {
        Some(BotConfig::from_settings(&settings.telegram)?)
    } else {
        None
    };
    let live = settings.mode == Mode::Live;
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
    let link = market_link(&store, &settings, &clock).await?;

    let hub = crate::web::live::LiveHub::new();
    let chat: Arc<dyn Notifier> = match &bot_config {
        Some(c) => Arc::new(TelegramNotifier::from_config(c, settings.trading.capital)?),
        None => Arc::new(handler::LogNotifier),
    };
    let notifier: Arc<dyn Notifier> = Arc::new(crate::web::live::RecordingNotifier::new(
        chat,
        store.clone(),
        clock.clone(),
        hub.clone(),
    ));
    // MODE=live: the Kite broker and the execution-time risk reads, both reading the access
    // token from the stored login session at each call (a new /login is used at once). The
    // service starts only when /preflight has no failed line; the capital ramp then applies.
    let (broker, risk_ports, settings): (Arc<dyn crate::oms::Broker>, _, _) = if live {
        match live_start(&store, &settings, &clock, &link, &notifier).await {
            Ok((broker, ports, settings)) => (broker, Some(ports), settings),
            Err(e) => {
                store.close().await;
                service_lock.release().await;
                return Err(e);
            }
        }
    } else {
        let paper = PaperBroker::new(store.clone(), settings.clone(), clock.clone())
            .with_live_prices(link.prices.clone());
        (Arc::new(paper), None, settings)
    };
    let analyst = build_analyst(&settings, &store, &clock, Some(notifier.clone())).await?;
    let scanner = Arc::new(MetaAgent::new(
        store.clone(),
        analyst,
        settings.clone(),
        clock.clone(),
    ));
    let next_scan = scheduler.clone();
    let mut handler = Handler::new(
        store.clone(),
        settings.clone(),
        clock.clone(),
        broker,
        notifier.clone(),
        scanner,
    )
    .with_next_scan(Arc::new(move || next_scan.next_fire(Job::Scan)))
    .with_market(link.clone());
    if let Some(ports) = risk_ports {
        handler = handler.with_risk_ports(ports);
    }
    let handler = Arc::new(handler);
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

    // Without a bot and without STATUS_TOKEN, the dashboard needs a token to act: generate
    // one once, keep it in the database, and print the login URL (like Jupyter).
    let configured_token = settings
        .status
        .token
        .clone()
        .filter(|t| !t.expose().is_empty());
    let (web_token, generated) = match (&bot_config, configured_token) {
        (_, Some(t)) => (Some(t), false),
        (Some(_), None) => (None, false),
        (None, None) => {
            let fresh = crate::web::auth::random_token();
            let kept = store
                .keep_generated_secret(GENERATED_TOKEN, &fresh, clock.now())
                .await?;
            (Some(Secret::new(kept)), true)
        }
    };
    // Bind the dashboard before announcing the start, so a busy port fails the start.
    let web_addr = crate::web::effective_addr(&settings.status.addr, web_token.is_some());
    let web_listener = crate::web::bind(&web_addr).await?;
    let local_addr = web_listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| web_addr.clone());
    let kill_token = write_kill_token(&store, &web_listener).await?;
    let state = store.system_state().await?;
    let _ = notifier
        .alert(&Alert::Started {
            mode: if live { "live" } else { "paper" }.into(),
            watchlist: settings.trading.watchlist.len(),
            halted: state.halted,
        })
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "could not send the start alert"));
    tracing::info!(
        status = %settings.status.addr,
        database = settings.database_url.split(':').next().unwrap_or(""),
        mode = if live { "live" } else { "paper" },
        "MFT-1 running"
    );

    let dashboard_url = format!("http://{}/", browsable(&local_addr));
    if bot_config.is_none() {
        tracing::info!(
            url = %dashboard_url,
            "TELEGRAM_BOT_TOKEN is not set: the web dashboard is the operator's interface"
        );
        if generated {
            // Printed to the terminal once, not logged: the log may be shipped elsewhere.
            let token = web_token.as_ref().map(|t| t.expose()).unwrap_or_default();
            eprintln!(
                "\n    MFT-1 dashboard (no Telegram bot configured). Open this URL to log in:\n\n        \
                 {dashboard_url}login?token={token}\n\n    The token is kept in the database; set \
                 STATUS_TOKEN to choose your own.\n"
            );
        }
    }

    let sink: Arc<dyn CommandHandler> = handler.clone();
    let dashboard = crate::web::Dashboard {
        handler: sink.clone(),
        store: store.clone(),
        token: web_token,
        clock: clock.clone(),
        capital: settings.trading.capital,
        hub,
        traces: None,
        kill_token: Some(Secret::new(kill_token.secret.clone())),
        postback_secret: settings.zerodha.api_secret.clone(),
    };
    let web = tokio::spawn(crate::web::serve_on(
        web_listener,
        dashboard,
        shutdown.clone(),
    ));
    let jobs = tokio::spawn(scheduler.run(sink.clone(), shutdown.clone()));
    // MODE=live: the order-history poll (the fallback when postbacks are lost) and the
    // reconciliation, the first one right away (after the start-up recovery above).
    let live_loops = if live {
        let poll = std::time::Duration::from_secs(settings.live.poll_seconds.max(1));
        let reconcile = std::time::Duration::from_secs(settings.live.reconcile_seconds.max(1));
        vec![
            tokio::spawn(every(
                sink.clone(),
                crate::domain::Command::PollOrders,
                poll,
                false,
                shutdown.clone(),
            )),
            tokio::spawn(every(
                sink.clone(),
                crate::domain::Command::Reconcile,
                reconcile,
                true,
                shutdown.clone(),
            )),
        ]
    } else {
        Vec::new()
    };
    // Live prices while a session exists and the market is open; a refused token ends the
    // session (one alert with a login button).
    let on_rejected: crate::market::prices::OnRejected = {
        let handler = handler.clone();
        Arc::new(move |reason: String| {
            let handler = handler.clone();
            tokio::spawn(async move { handler.session_expired(&reason).await });
        })
    };
    // Order updates on the ticker (live): merged like a postback or a poll, idempotently.
    let on_order: crate::market::prices::OnOrderUpdate = {
        let sink = sink.clone();
        Arc::new(move |order: Box<kiteconnect::Order>| {
            if !live {
                return;
            }
            let sink = sink.clone();
            let update = crate::oms::kite::order_update(&order);
            tokio::spawn(async move {
                let req = crate::domain::Request {
                    command: crate::domain::Command::OrderUpdate(Box::new(update)),
                    actor: crate::domain::Actor::Scheduler,
                };
                if let Err(e) = sink.handle(req).await {
                    tracing::warn!(error = %e, "ticker order update not merged");
                }
            });
        })
    };
    let ticker = tokio::spawn(crate::market::prices::run_ticker(
        link.clone(),
        store.clone(),
        settings.clone(),
        clock.clone(),
        on_rejected,
        on_order,
        shutdown.clone(),
    ));
    // The 06:00 IST expiry, checked every few seconds against the (injected) clock.
    let expiry = {
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                handler.check_session_expiry().await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                }
            }
        })
    };
    let bot_result = match bot_config {
        Some(c) => crate::bot::run_bot(c, sink, shutdown.clone()).await,
        None => {
            shutdown.cancelled().await;
            Ok(())
        }
    };
    // Whatever ended the bot ends the service.
    shutdown.cancel();
    let _ = jobs.await;
    for task in live_loops {
        let _ = task.await;
    }
    let _ = ticker.await;
    let _ = expiry.await;
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

/// Sends `command` (as the scheduler) every `period` until `shutdown`, first at once when
/// `now` is set. A slow run delays the next one rather than piling up.
async fn every(
    sink: Arc<dyn CommandHandler>,
    command: crate::domain::Command,
    period: std::time::Duration,
    now: bool,
    shutdown: CancellationToken,
) {
    let mut first = now;
    loop {
        if !first {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
        first = false;
        if shutdown.is_cancelled() {
            return;
        }
        let req = crate::domain::Request {
            command: command.clone(),
            actor: crate::domain::Actor::Scheduler,
        };
        if let Err(e) = sink.handle(req).await {
            tracing::warn!(command = ?command, error = %e, "live job failed");
        }
    }
}

/// The last day of the capital ramp: the `[live] ramp_days`-th trading day from `first` (the
/// first live day, counted when it is a trading day). None when there is no ramp.
pub fn ramp_end(
    settings: &Settings,
    calendar: &crate::market::MarketCalendar,
    first: chrono::NaiveDate,
) -> Option<chrono::NaiveDate> {
    let ramp = settings.live.ramp_days;
    if ramp == 0 {
        return None;
    }
    let mut days = 0u32;
    let mut d = first;
    loop {
        if calendar.is_trading_day(d) {
            days += 1;
            if days == ramp {
                return Some(d);
            }
        }
        d = d.succ_opt()?;
    }
}

/// MODE=live at start: builds the Kite broker and risk reads on the stored session, resolves
/// in-flight orders by tag, runs /preflight (any failed line refuses the start), then stores
/// the first live day and caps the capital during the ramp. Returns the settings to run with.
async fn live_start(
    store: &Store,
    settings: &Arc<Settings>,
    clock: &Arc<dyn Clock>,
    link: &Arc<crate::market::MarketLink>,
    notifier: &Arc<dyn Notifier>,
) -> Result<
    (
        Arc<dyn crate::oms::Broker>,
        crate::market::RiskPorts,
        Arc<Settings>,
    ),
    AppError,
> {
    let broker: Arc<dyn crate::oms::Broker> = Arc::new(
        crate::oms::KiteBroker::new(
            settings,
            store.clone(),
            crate::oms::TokenSource::Session(link.session.clone()),
        )
        .map_err(|e| AppError::LiveBroker(e.to_string()))?
        .with_order_limiter(crate::market::kite_order_limiter()),
    );
    let api_key = settings
        .zerodha
        .api_key
        .as_ref()
        .map(|k| k.expose().to_string())
        .unwrap_or_default();
    let reads = crate::market::KiteRiskReads::from_session(
        &settings.zerodha.api_url,
        &api_key,
        link.session.clone(),
    )
    .map_err(|e| AppError::LiveBroker(e.to_string()))?;
    let ports = crate::market::RiskPorts::kite(reads);
    let checker = Handler::new(
        store.clone(),
        settings.clone(),
        clock.clone(),
        broker.clone(),
        notifier.clone(),
        Arc::new(handler::NoScanner),
    )
    .with_market(link.clone())
    .with_risk_ports(ports.clone());
    // In-flight orders of the last run are looked up by tag before anything else (preflight's
    // reconciliation would otherwise count them as differences). Without a session the
    // preflight below fails on its session line instead.
    if link.session.current().is_ok() {
        checker.recover().await?;
    }
    let report = match checker
        .handle(crate::domain::Request {
            command: crate::domain::Command::Preflight,
            actor: crate::domain::Actor::Cli,
        })
        .await
    {
        Ok(crate::ports::Reply::Preflight(r)) => r,
        Ok(other) => {
            return Err(AppError::LivePreflight(format!(
                "unexpected answer to /preflight: {other:?}"
            )));
        }
        Err(e) => return Err(AppError::LivePreflight(e.to_string())),
    };
    if report.failed() {
        let lines: Vec<String> = report
            .lines
            .iter()
            .filter(|l| l.level == crate::ports::CheckLevel::Failed)
            .map(|l| {
                let fix = l
                    .fix
                    .as_deref()
                    .map(|f| format!(" (fix: {f})"))
                    .unwrap_or_default();
                format!("  failed: {}: {}{fix}", l.check, l.detail)
            })
            .collect();
        return Err(AppError::LivePreflight(lines.join("\n")));
    }
    let today = crate::clock::ist_date(clock.now());
    let first = store.first_live_day(today).await?;
    // The ramp is kept as its last day, so each day's capital follows the date, not the day
    // the process started.
    let settings = match ramp_end(settings, &link.calendar, first).filter(|end| *end >= today) {
        Some(end) => {
            let mut capped = (**settings).clone();
            capped.live.capped_until = Some(end);
            tracing::warn!(
                first_live_day = %first,
                last_capped_day = %end,
                capital = %capped.capital_on(today),
                "capital ramp: sizing and risk use start_fraction of [trading] capital"
            );
            Arc::new(capped)
        }
        None => settings.clone(),
    };
    Ok((broker, ports, settings))
}

/// The analyst `[analysis] analyst` selects: the rule analyst, or the LLM Analysis Agent with
/// the five MCP servers in this process (alone, or behind the rules for `rules+llm`).
pub async fn build_analyst(
    settings: &Arc<Settings>,
    store: &Store,
    clock: &Arc<dyn Clock>,
    notifier: Option<Arc<dyn Notifier>>,
) -> Result<Arc<dyn crate::agents::Analyst>, AppError> {
    use crate::config::AnalystMode;
    use crate::mcp::{McpContext, analyst::LlmAnalyst, hub::Hub, llm};
    let mode = settings.analyst_mode();
    if mode == AnalystMode::Rules {
        return Ok(Arc::new(RuleAnalyst::with_clock(
            settings.strategy.clone(),
            clock.clone(),
        )));
    }
    let prompts =
        llm::Prompts::load(&settings.analysis).map_err(|e| AppError::Analyst(e.to_string()))?;
    let ctx = McpContext::new(store.clone(), settings.clone(), clock.clone());
    let hub = Hub::in_process(&ctx)
        .await
        .map_err(|e| AppError::Analyst(e.to_string()))?;
    let chat = llm::ChatClient::from_settings(settings);
    tracing::info!(
        model = %chat.model,
        tools = hub.tools().len(),
        prompt = %&prompts.hash[..12],
        mode = ?mode,
        "LLM Analysis Agent ready"
    );
    let mut agent = LlmAnalyst::new(
        hub,
        chat,
        store.clone(),
        settings.clone(),
        clock.clone(),
        prompts,
        mode,
    );
    if let Some(n) = notifier {
        agent = agent.with_notifier(n);
    }
    Ok(Arc::new(agent))
}
