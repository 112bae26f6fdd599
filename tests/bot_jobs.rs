//! The scheduler loop: a firing sends its Command as `Actor::Scheduler` to the handler when the
//! clock reaches the cron time, disabled jobs never fire, and shutdown stops the loop.

use chrono::{TimeZone, Utc};
use mft::clock::ManualClock;
use mft::config::ScheduleSettings;
use mft::domain::{Actor, Command, Request};
use mft::jobs::{Job, Scheduler};
use mft::ports::Reply;
use mft::ports::{CommandError, CommandHandler};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Recorder(Mutex<Vec<Request>>);

#[async_trait::async_trait]
impl CommandHandler for Recorder {
    async fn handle(&self, req: Request) -> Result<Reply, CommandError> {
        self.0.lock().unwrap().push(req);
        Ok(Reply::Done { changed: 0 })
    }
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn jobs_fire_on_the_clock_and_stop_on_shutdown() {
    // Wed 25 Nov 2026 14:59:59 IST; the scan is disabled, the sweep runs every minute and the
    // square-off at 15:00 IST (09:30 UTC).
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 25, 9, 29, 59).unwrap());
    let settings = ScheduleSettings {
        scan: String::new(),
        expiry_sweep: "0 * * * * *".into(),
        square_off: "0 0 15 * * Mon-Fri".into(),
        login_link: String::new(),
        exit_check: String::new(),
        instruments_refresh: String::new(),
    };
    let scheduler = Arc::new(Scheduler::from_settings(&settings, Arc::new(clock.clone())).unwrap());
    assert_eq!(scheduler.next_fire(Job::Scan), None);
    assert_eq!(
        scheduler.next_fire(Job::SquareOff),
        Some(Utc.with_ymd_and_hms(2026, 11, 25, 9, 30, 0).unwrap())
    );
    let rec = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.clone().run(rec.clone(), shutdown.clone()));

    // Nothing fires before the clock gets there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rec.0.lock().unwrap().is_empty());

    clock.set(Utc.with_ymd_and_hms(2026, 11, 25, 9, 30, 0).unwrap());
    wait_until("both jobs to fire", || rec.0.lock().unwrap().len() >= 2).await;
    let mut cmds: Vec<String> = rec
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.actor, Actor::Scheduler);
            format!("{:?}", r.command)
        })
        .collect();
    cmds.sort();
    assert_eq!(
        cmds,
        vec![
            format!("{:?}", Command::ExpirySweep),
            format!("{:?}", Command::SquareOff)
        ]
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the scheduler did not stop")
        .unwrap();
    let n = rec.0.lock().unwrap().len();
    clock.set(Utc.with_ymd_and_hms(2026, 11, 25, 9, 40, 0).unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rec.0.lock().unwrap().len(),
        n,
        "nothing fires after shutdown"
    );
}
