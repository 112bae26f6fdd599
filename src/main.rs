//! `mft`: the command line. Loads settings, opens the store (applying migrations) and runs one
//! subcommand. Errors are printed with what to do and the process exits 1.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use mft::config::Settings;
use mft::domain::{InstrumentKey, Interval};
use mft::store::Store;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// MFT-1: a chat-first trading co-pilot for Zerodha Kite Connect, operated from Telegram.
/// Paper trading is the default; live trading needs MODE=live.
#[derive(Debug, Parser)]
#[command(name = "mft", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the service: scheduled scans, the Telegram bot and the status page.
    Run,
    /// Apply database migrations (every command also applies them at start).
    Migrate,
    /// Settings: check and print the effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Market data: import, Kite instruments and history, listing.
    Data {
        #[command(subcommand)]
        command: DataCmd,
    },
    /// Print the indicator values the bot sees for stored candles.
    Ta {
        /// Instrument as EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY
        symbol: InstrumentKey,
        /// Candle interval (Kite's names: minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute, day)
        #[arg(long)]
        interval: Interval,
        /// Only the last N rows
        #[arg(long)]
        last: Option<usize>,
        /// Output format
        #[arg(long, value_enum, default_value_t = TaFormat::Table)]
        format: TaFormat,
    },
    /// Render a proposal-style chart of stored candles to a PNG file.
    Chart {
        /// Instrument as EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY
        symbol: InstrumentKey,
        /// Candle interval (Kite's names)
        #[arg(long)]
        interval: Interval,
        /// Number of candles to draw
        #[arg(long, default_value_t = 120)]
        bars: usize,
        /// Entry price line (rupees); give entry, stop and target together
        #[arg(long, requires_all = ["stop", "target"])]
        entry: Option<f64>,
        /// Stop price line (rupees)
        #[arg(long, requires_all = ["entry", "target"])]
        stop: Option<f64>,
        /// Target price line (rupees)
        #[arg(long, requires_all = ["entry", "stop"])]
        target: Option<f64>,
        /// Output PNG file
        #[arg(long)]
        out: PathBuf,
    },
    /// Liquidate everything and halt, like /kill in the chat: cancels open orders, squares off
    /// every position at the last price and stores the halt (lifted by /resume).
    Kill {
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// The MCP servers (market_data, technical_analysis, news, zerodha, trade_log) for any MCP client.
    Mcp {
        #[command(subcommand)]
        command: McpCmd,
    },
    /// How proposal N came about: the LLM analysis trace (model, tool calls, tokens, verdict).
    Why {
        /// Proposal number
        id: i64,
    },
    /// Log in to Kite without a reachable callback: prints the login URL, then reads the address
    /// Kite redirected to (or the bare request_token) from standard input and stores the session.
    Login,
    /// The pre-flight checklist: one line per check (ok / warning / failed with the fix); exits 1
    /// when anything failed.
    Preflight,
    /// Replay stored candles through the analyst, sizing, risk engine and a simulated broker,
    /// and write a report (report.json, trades.csv, equity.png, report.html).
    Backtest {
        /// Instruments as EXCHANGE:TRADINGSYMBOL (default: [trading] watchlist)
        symbols: Vec<InstrumentKey>,
        /// Candle interval (Kite's names: minute, 3minute, ..., 60minute, day)
        #[arg(long)]
        interval: Interval,
        /// First day, YYYY-MM-DD (IST)
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day, YYYY-MM-DD (IST), inclusive
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Report folder (default: backtests/<run id>)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Analyst exchanges: off (rules), record (store every exchange), replay (no endpoint)
        #[arg(long, default_value = "off")]
        llm: mft::backtest::LlmMode,
    },
}

#[derive(Debug, Subcommand)]
enum McpCmd {
    /// Serve one server on stdin/stdout, or with --http every selected server at /mcp/<name>.
    Serve {
        /// market_data, technical_analysis, news, zerodha, trade_log, or all (HTTP only)
        name: String,
        /// Serve streamable HTTP on this address (e.g. 127.0.0.1:8600) instead of stdio;
        /// requires MCP_TOKEN unless the address is loopback
        #[arg(long)]
        http: Option<String>,
    },
    /// Print the servers and their tools.
    List,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print the effective settings (secrets as ***); exit 1 listing every invalid or unknown setting.
    Check,
}

#[derive(Debug, Subcommand)]
enum DataCmd {
    /// Import candles from a CSV file (header: timestamp or date[,time], open, high, low, close, volume[, oi]).
    Import {
        /// CSV file
        file: PathBuf,
        /// Instrument as EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY
        #[arg(long)]
        symbol: InstrumentKey,
        /// Candle interval (Kite's names)
        #[arg(long)]
        interval: Interval,
    },
    /// Download Kite's instruments dump into the `instruments` table.
    SyncInstruments {
        /// Only this exchange (e.g. NSE); all exchanges when omitted
        #[arg(long)]
        exchange: Option<String>,
    },
    /// Download Kite historical candles (chunked to Kite's limits, <= 3 requests/s, resumable).
    Fetch {
        /// Instrument as EXCHANGE:TRADINGSYMBOL, e.g. NSE:INFY
        symbol: InstrumentKey,
        /// Candle interval (Kite's names)
        #[arg(long)]
        interval: Interval,
        /// First day, YYYY-MM-DD (IST)
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day, YYYY-MM-DD (IST), inclusive
        #[arg(long)]
        to: chrono::NaiveDate,
    },
    /// One row per instrument and interval: symbol, interval, first, last, rows.
    List,
    /// NSE trading holidays (scans, the trading window and the login link skip them).
    Holidays {
        #[command(subcommand)]
        command: HolidaysCmd,
    },
}

#[derive(Debug, Subcommand)]
enum HolidaysCmd {
    /// Import holidays from a CSV file with the header `date,description` (dates YYYY-MM-DD);
    /// a bad line is reported with its number and nothing is written.
    Import {
        /// CSV file
        file: PathBuf,
    },
    /// List the stored holidays.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TaFormat {
    Table,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the message already
/// carries (many module errors quote their source).
fn render_error(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn init_tracing(cmd: &Cmd) {
    // The service logs at info; one-shot commands keep the terminal for their own output.
    let default = match cmd {
        Cmd::Run => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load_settings() -> Result<Settings> {
    Settings::load().map_err(|e| anyhow::anyhow!("invalid settings:\n{e}"))
}

async fn open_store(settings: &Settings) -> Result<Store> {
    Store::connect(&settings.database_url)
        .await
        .context("could not open the database (check DATABASE_URL)")
}

async fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    if let Cmd::Config {
        command: ConfigCmd::Check,
    } = cmd
    {
        return Ok(config_check());
    }
    let settings = load_settings()?;
    match cmd {
        Cmd::Config { .. } => unreachable!("handled above"),
        Cmd::Run => {
            mft::app::run(settings).await?;
        }
        Cmd::Migrate => {
            let (store, report) = Store::connect_and_report(&settings.database_url)
                .await
                .context("could not open the database (check DATABASE_URL)")?;
            if report.applied.is_empty() {
                println!("database is up to date");
            } else {
                println!("applied: {}", report.applied.join(", "));
            }
            if report.hypertable {
                println!("candles is a TimescaleDB hypertable");
            }
            store.close().await;
        }
        Cmd::Data { command } => data(settings, command).await?,
        Cmd::Ta {
            symbol,
            interval,
            last,
            format,
        } => {
            let store = open_store(&settings).await?;
            let candles = store.candles(&symbol, interval, None, None).await?;
            store.close().await;
            if candles.is_empty() {
                bail!(
                    "no {interval} candles stored for {symbol}: import or fetch them first (mft data import / mft data fetch)"
                );
            }
            let mut rows = mft::ta::snapshot(&candles)?;
            if let Some(n) = last {
                let skip = rows.len().saturating_sub(n);
                rows.drain(..skip);
            }
            match format {
                TaFormat::Csv => mft::ta::write_csv(std::io::stdout().lock(), &rows)?,
                TaFormat::Table => print!("{}", mft::ta::format_table(&rows)),
            }
        }
        Cmd::Chart {
            symbol,
            interval,
            bars,
            entry,
            stop,
            target,
            out,
        } => {
            let store = open_store(&settings).await?;
            if bars == 0 {
                bail!("--bars must be at least 1");
            }
            // Read enough history before the first drawn bar for the averages and RSI to be
            // past their warm-up where the chart starts.
            let st = &settings.strategy;
            let warmup = 3 * st.fast.max(st.slow).max(st.rsi_period);
            let candles = store.last_candles(&symbol, interval, bars + warmup).await?;
            store.close().await;
            if candles.is_empty() {
                bail!("no {interval} candles stored for {symbol}: import or fetch them first");
            }
            let drawn = candles.len().min(bars);
            let levels = match (entry, stop, target) {
                (Some(entry), Some(stop), Some(target)) => Some(mft::chart::Levels {
                    entry,
                    stop,
                    target,
                }),
                _ => None,
            };
            let what = match &levels {
                Some(l) if l.target >= l.entry => "BUY proposal",
                Some(_) => "SELL proposal",
                None => "chart",
            };
            let title = format!("{symbol} · {interval} · {what}");
            let png = mft::agents::chart_for(
                &symbol,
                &title,
                &candles,
                &settings.strategy,
                &settings.charts,
                levels,
            )?;
            std::fs::write(&out, png)
                .with_context(|| format!("could not write {}", out.display()))?;
            println!("wrote {} ({drawn} candles)", out.display());
        }
        Cmd::Mcp { command } => return mcp(settings, command).await,
        Cmd::Why { id } => {
            let store = open_store(&settings).await?;
            let proposal = store.proposal(id).await?;
            let trace = store.analysis_trace_for_proposal(id).await?;
            store.close().await;
            println!(
                "{}",
                mft::texts::why(id, proposal.as_ref(), trace.as_ref(), false)
            );
            if proposal.is_none() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Login => return login(settings).await,
        Cmd::Preflight => {
            let (handler, store) = mft::app::cli_handler(std::sync::Arc::new(settings)).await?;
            let reply = handler
                .handle(mft::domain::Request {
                    command: mft::domain::Command::Preflight,
                    actor: mft::domain::Actor::Cli,
                })
                .await;
            store.close().await;
            let mft::ports::Reply::Preflight(report) = reply? else {
                bail!("unexpected answer to the pre-flight checklist");
            };
            println!("{}", mft::texts::preflight(&report));
            if report.failed() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Backtest {
            symbols,
            interval,
            from,
            to,
            out,
            llm,
        } => {
            let spec = mft::backtest::Spec {
                symbols,
                interval,
                from,
                to,
                out,
                llm,
            };
            return backtest(settings, spec).await;
        }
        Cmd::Kill { yes } => {
            if !yes && !confirm_kill()? {
                println!("not confirmed: nothing done");
                return Ok(ExitCode::SUCCESS);
            }
            let (report, route) =
                mft::app::kill_from_cli_routed(std::sync::Arc::new(settings)).await?;
            if let mft::app::KillRoute::Service { pid, addr } = &route {
                println!("sent to the running mft run (pid {pid}, status server {addr})");
            }
            println!(
                "halted; cancelled {} open order(s)",
                report.cancelled_orders
            );
            for c in &report.closed {
                println!(
                    "closed {} x{} at {} (P&L {})",
                    c.key, c.quantity, c.price, c.pnl
                );
            }
            if report.closed.is_empty() {
                println!("no open positions");
            }
            println!("realized P&L today: {}", report.realized_today);
            for e in &report.errors {
                let again = if e.recoverable {
                    " (running mft kill again may finish it)"
                } else {
                    ""
                };
                eprintln!("warning: {e}{again}");
            }
            if !report.errors.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn mcp(settings: Settings, command: McpCmd) -> Result<ExitCode> {
    use mft::mcp::{McpContext, SERVERS, hub, serve};
    let settings = std::sync::Arc::new(settings);
    let store = open_store(&settings).await?;
    let ctx = McpContext::new(
        store.clone(),
        settings.clone(),
        std::sync::Arc::new(mft::clock::SystemClock),
    );
    let result = match command {
        McpCmd::List => {
            for name in SERVERS {
                let client = hub::connect_named(&ctx, name).await?;
                let tools = client
                    .list_all_tools()
                    .await
                    .map_err(|e| anyhow::anyhow!("listing the tools of {name}: {e}"))?;
                println!("{name}");
                for t in tools {
                    let desc = t.description.as_deref().unwrap_or("");
                    println!("  {:<20} {desc}", t.name);
                }
                let _ = client.cancel().await;
            }
            Ok(ExitCode::SUCCESS)
        }
        McpCmd::Serve { name, http: None } => {
            serve::selected(&name)?;
            serve::serve_stdio(ctx, &name).await?;
            Ok(ExitCode::SUCCESS)
        }
        McpCmd::Serve {
            name,
            http: Some(addr),
        } => {
            let names = serve::selected(&name)?;
            let token = settings.mcp.token.as_ref().map(|t| t.expose().to_string());
            let listener = serve::bind(&addr, token.as_deref()).await?;
            let bound = listener.local_addr()?;
            eprintln!(
                "serving MCP over HTTP on http://{bound}: {}{}",
                names
                    .iter()
                    .map(|n| format!("/mcp/{n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                if token.is_some() {
                    " (Authorization: Bearer MCP_TOKEN required)"
                } else {
                    " (no MCP_TOKEN: loopback only)"
                }
            );
            let ct = tokio_util::sync::CancellationToken::new();
            let stop = ct.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            serve::serve_http(ctx, &names, listener, token, ct).await?;
            Ok(ExitCode::SUCCESS)
        }
    };
    store.close().await;
    result
}

/// `mft login`: the URL, then the pasted redirect (or request_token) from standard input.
async fn login(settings: Settings) -> Result<ExitCode> {
    use mft::domain::{Actor, Command, Request};
    use mft::ports::Reply;
    let (handler, store) = mft::app::cli_handler(std::sync::Arc::new(settings)).await?;
    let run = |command| {
        let handler = handler.clone();
        async move {
            handler
                .handle(Request {
                    command,
                    actor: Actor::Cli,
                })
                .await
        }
    };
    let result = async {
        let Reply::LoginLink { url } = run(Command::Login { input: None }).await? else {
            bail!("unexpected answer while making the login link");
        };
        println!("Open this URL, log in to Kite, then paste the address you were sent to (or its request_token):");
        println!("{url}");
        eprint!("> ");
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("could not read standard input")?;
        match run(Command::Login {
            input: Some(line.trim().to_string()),
        })
        .await?
        {
            Reply::LoggedIn { user_id, until, .. } => {
                println!("{}", mft::texts::session_active(&user_id, &until));
                Ok(ExitCode::SUCCESS)
            }
            Reply::LoginRefused { reason } => {
                eprintln!("error: {reason}");
                Ok(ExitCode::FAILURE)
            }
            other => bail!("unexpected answer to the login: {other:?}"),
        }
    }
    .await;
    store.close().await;
    result
}

/// A `data list` time in IST; a time before 1990 (absurd data stored by an older mft) in UTC,
/// since the IST zone's rules before 1906 give a local-mean-time offset like +05:53.
fn list_time(ts: chrono::DateTime<chrono::Utc>) -> String {
    if ts < mft::market::sanity::earliest_plausible() {
        ts.format("%Y-%m-%d %H:%M UTC").to_string()
    } else {
        ts.with_timezone(&mft::clock::IST)
            .format("%Y-%m-%d %H:%M %:z")
            .to_string()
    }
}

fn config_check() -> ExitCode {
    match Settings::load() {
        Ok(s) => {
            print!("{}", s.render_effective());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid settings:\n{e}");
            ExitCode::FAILURE
        }
    }
}

fn confirm_kill() -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("mft kill needs confirmation: run it in a terminal, or pass --yes");
    }
    eprint!(
        "This cancels open orders, squares off every position and halts trading. Type KILL to confirm: "
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "KILL")
}

async fn data(settings: Settings, command: DataCmd) -> Result<()> {
    let store = open_store(&settings).await?;
    let result = data_inner(&settings, &store, command).await;
    store.close().await;
    result
}

async fn data_inner(settings: &Settings, store: &Store, command: DataCmd) -> Result<()> {
    use mft::market;
    match command {
        DataCmd::Import {
            file,
            symbol,
            interval,
        } => {
            let report = market::import_csv(store, &file, &symbol, interval).await?;
            println!(
                "{symbol} {interval}: {} rows read, {} inserted or changed",
                report.rows_read, report.rows_written
            );
            if !report.ignored_columns.is_empty() {
                println!("ignored columns: {}", report.ignored_columns.join(", "));
            }
        }
        DataCmd::SyncInstruments { exchange } => {
            let kite = market::KiteReader::from_settings(settings)?;
            let report = market::sync_instruments(store, &kite, exchange.as_deref()).await?;
            println!(
                "instruments ({}): {} in the dump, {} inserted or changed, {} stored",
                report.exchange.as_deref().unwrap_or("all exchanges"),
                report.rows,
                report.written,
                report.stored
            );
        }
        DataCmd::Fetch {
            symbol,
            interval,
            from,
            to,
        } => {
            if from > to {
                bail!("--from {from} is after --to {to}");
            }
            let kite = market::KiteReader::from_settings(settings)?;
            let mut progress = market::terminal_progress();
            let r = market::fetch_history(store, &kite, &symbol, interval, from, to, &mut progress)
                .await?;
            if r.requests == 0 {
                println!("{symbol} {interval}: nothing missing between {from} and {to}");
            } else {
                println!(
                    "{symbol} {interval}: {} request(s), {} candles received, {} inserted or changed",
                    r.requests, r.candles_received, r.candles_written
                );
            }
            if let Some(day) = r.open_day {
                println!("{day}'s session is not over: re-run later to complete it");
            }
        }
        DataCmd::Holidays {
            command: HolidaysCmd::Import { file },
        } => {
            market::calendar::seed_holidays(store).await?;
            let n = market::import_holidays(store, &file).await?;
            println!("{}: {n} holiday(s) inserted or changed", file.display());
        }
        DataCmd::Holidays {
            command: HolidaysCmd::List,
        } => {
            market::calendar::seed_holidays(store).await?;
            for (day, description) in store.holidays().await? {
                println!("{day} {:<3} {description}", day.format("%a"));
            }
        }
        DataCmd::List => {
            let rows = store.candle_summary().await?;
            if rows.is_empty() {
                println!("no candles stored yet: try mft data import or mft data fetch");
                return Ok(());
            }
            println!(
                "{:<24} {:<9} {:<25} {:<25} {:>9}",
                "symbol", "interval", "first", "last", "rows"
            );
            for r in rows {
                println!(
                    "{:<24} {:<9} {:<25} {:<25} {:>9}",
                    r.key.to_string(),
                    r.interval.as_str(),
                    list_time(r.first),
                    list_time(r.last),
                    r.rows
                );
            }
        }
    }
    Ok(())
}

async fn backtest(settings: Settings, spec: mft::backtest::Spec) -> Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = open_store(&settings).await?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {percent:>3}% {pos}/{len} bars {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let pb = bar.clone();
    let mut progress = move |done: u64, total: u64| {
        if let Some(pb) = &pb {
            pb.set_length(total);
            pb.set_position(done);
        }
    };
    let result = mft::backtest::run(&store, &settings, &spec, &mut progress, &cancel).await;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    watcher.abort();
    store.close().await;
    let finished = result?;
    print!("{}", finished.summary);
    println!("report: {}", finished.out.display());
    Ok(ExitCode::SUCCESS)
}
