//! Live prices: Kite ticker frames over a local WebSocket -> kiteconnect's ticker (the client
//! `mft run` uses) -> the price cache, for 500 instruments at 10 ticks/s each (100 frames/s of
//! 50 LTP packets, each instrument every 100 ms). The client runs alone on one thread (its own
//! current-thread runtime), so that thread's CPU time is the cost of the path. Prints the
//! send -> cached latency per frame (median, p99, max) and the client's CPU as % of one core.
//! Targets: p99 <= 1 ms, CPU <= 5 %. Linux only (thread CPU from /proc/thread-self/stat).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::get;
use mft::config::KiteSettings;
use mft::domain::InstrumentKey;
use mft::market::{KiteReader, PriceCache};

const INSTRUMENTS: u32 = 500;
const PER_FRAME: u32 = 50;
const FRAMES_PER_SEC: u64 = 100;
const WARMUP: Duration = Duration::from_secs(2);
const RUN: Duration = Duration::from_secs(20);
const FIRST_TOKEN: u32 = 100_000;

/// utime + stime of the calling thread, in seconds (clock ticks of 10 ms).
fn thread_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = s.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; `after` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

fn frame(seq: u64, batch: u32) -> Vec<u8> {
    let mut out = (PER_FRAME as u16).to_be_bytes().to_vec();
    for i in 0..PER_FRAME {
        let token = FIRST_TOKEN + (batch * PER_FRAME + i) % INSTRUMENTS;
        out.extend_from_slice(&8u16.to_be_bytes());
        out.extend_from_slice(&token.to_be_bytes());
        // The price carries the frame's sequence number, so the client can time it.
        out.extend_from_slice(&(seq as u32 + 1).to_be_bytes());
    }
    out
}

fn main() {
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // The server: its own thread and runtime.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server_sent = sent.clone();
    let server_stop = stop.clone();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/ws",
                get(move |ws: WebSocketUpgrade| {
                    let sent = server_sent.clone();
                    let stop = server_stop.clone();
                    async move {
                        ws.on_upgrade(move |mut socket| async move {
                            let mut tick = tokio::time::interval(Duration::from_micros(
                                1_000_000 / FRAMES_PER_SEC,
                            ));
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            let mut seq: u64 = 0;
                            while !stop.load(Ordering::Relaxed) {
                                tick.tick().await;
                                let f = frame(seq, (seq % (INSTRUMENTS / PER_FRAME) as u64) as u32);
                                sent.lock().unwrap().push(Instant::now());
                                if socket.send(Message::Binary(f.into())).await.is_err() {
                                    return;
                                }
                                seq += 1;
                            }
                            let _ = socket.send(Message::Close(None)).await;
                        })
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send addr");
            let _ = axum::serve(listener, app).await;
        });
    });
    let addr = addr_rx.recv().expect("server address");

    // The client: kiteconnect's ticker and the cache on one current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let (latencies, cpu, wall, ticks_applied) = rt.block_on(async {
        let reader = KiteReader::new(
            "http://127.0.0.1:9",
            "bench_key",
            "bench_token",
            KiteSettings::default(),
        )
        .expect("reader");
        let cache = PriceCache::new();
        cache.set_tokens(
            (0..INSTRUMENTS)
                .map(|i| (FIRST_TOKEN + i, InstrumentKey::new("NSE", &format!("S{i}")))),
        );
        let (ticker, mut events) = reader.ticker(&format!("ws://{addr}/ws")).expect("ticker");
        let tokens: Vec<u32> = (0..INSTRUMENTS).map(|i| FIRST_TOKEN + i).collect();
        ticker
            .subscribe(&tokens, kiteconnect::Mode::Ltp)
            .expect("subscribe");
        let started = Instant::now();
        let mut measuring: Option<(Instant, f64)> = None;
        let mut latencies = Vec::new();
        let mut applied = 0usize;
        while let Some(ev) = events.recv().await {
            let kiteconnect::TickerEvent::Ticks(ticks) = ev else {
                continue;
            };
            let now = chrono::Utc::now();
            let a = cache.apply_ticks(&ticks, now);
            let done = Instant::now();
            if measuring.is_none() && started.elapsed() >= WARMUP {
                measuring = Some((Instant::now(), thread_cpu()));
            }
            if let Some((t0, _)) = measuring {
                applied += a.updated;
                let seq = ticks
                    .first()
                    .and_then(|t| t.last_price)
                    .map(|p| (p * 100.0).round() as usize - 1);
                if let Some(seq) = seq
                    && let Some(at) = sent.lock().unwrap().get(seq).copied()
                {
                    latencies.push(done.duration_since(at));
                }
                if t0.elapsed() >= RUN {
                    break;
                }
            }
        }
        let (t0, c0) = measuring.expect("measured");
        let wall = t0.elapsed().as_secs_f64();
        let cpu = thread_cpu() - c0;
        ticker.close();
        (latencies, cpu, wall, applied)
    });
    stop.store(true, Ordering::Relaxed);
    drop(server);

    let mut l = latencies;
    l.sort();
    let pct = |p: f64| {
        l[((l.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(l.len() - 1)]
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let cpu_pct = cpu / wall * 100.0;
    println!(
        "ticks: {INSTRUMENTS} instruments x 10 ticks/s ({} frames/s of {PER_FRAME} LTP packets), {:.1} s measured",
        FRAMES_PER_SEC, wall
    );
    println!(
        "  {} frames, {} ticks applied ({:.0} ticks/s)",
        l.len(),
        ticks_applied,
        ticks_applied as f64 / wall
    );
    println!(
        "  latency send -> cached: median {:.0} µs, p99 {:.0} µs, max {:.0} µs (target p99 <= 1000 µs)",
        us(pct(0.5)),
        us(pct(0.99)),
        us(*l.last().expect("samples"))
    );
    println!("  client CPU: {cpu_pct:.2} % of one core (target <= 5 %)");
    // The tail is scheduling: on a shared machine the client thread waits for a core.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "  machine load average {} on {cores} core(s)",
            load.split_whitespace().next().unwrap_or("?")
        );
    }
    std::process::exit(0);
}
