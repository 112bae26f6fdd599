//! The scheduler: 6-field cron strings from `[schedules]`, evaluated in Asia/Kolkata, each firing
//! sends one Command (as `Actor::Scheduler`) to the command handler. It never acts by itself.

use crate::clock::{Clock, IST};
use crate::config::ScheduleSettings;
use crate::domain::{Actor, Command, Request};
use crate::ports::CommandHandler;
use chrono::{DateTime, Utc};
use cron::Schedule;
use std::str::FromStr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Scan,
    ExpirySweep,
    SquareOff,
    /// The daily Kite login link (skipped on NSE holidays and weekends).
    LoginLink,
    /// Paper bracket exits between scans.
    ExitCheck,
    /// The daily download of Kite's instruments dump.
    InstrumentsRefresh,
}

impl Job {
    pub const ALL: [Job; 6] = [
        Job::Scan,
        Job::ExpirySweep,
        Job::SquareOff,
        Job::LoginLink,
        Job::ExitCheck,
        Job::InstrumentsRefresh,
    ];

    /// The key in `[schedules]`.
    pub fn name(self) -> &'static str {
        match self {
            Job::Scan => "scan",
            Job::ExpirySweep => "expiry_sweep",
            Job::SquareOff => "square_off",
            Job::LoginLink => "login_link",
            Job::ExitCheck => "exit_check",
            Job::InstrumentsRefresh => "instruments_refresh",
        }
    }

    /// What a firing asks the handler to do; None when this build cannot run the job.
    pub fn command(self) -> Option<Command> {
        match self {
            Job::Scan => Some(Command::Scan { only: None }),
            Job::ExpirySweep => Some(Command::ExpirySweep),
            Job::SquareOff => Some(Command::SquareOff),
            Job::LoginLink => Some(Command::Login { input: None }),
            Job::ExitCheck => Some(Command::CheckExits),
            Job::InstrumentsRefresh => Some(Command::RefreshInstruments),
        }
    }

    fn expr(self, s: &ScheduleSettings) -> &str {
        match self {
            Job::Scan => &s.scan,
            Job::ExpirySweep => &s.expiry_sweep,
            Job::SquareOff => &s.square_off,
            Job::LoginLink => &s.login_link,
            Job::ExitCheck => &s.exit_check,
            Job::InstrumentsRefresh => &s.instruments_refresh,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "schedules.{job} = {expr:?} is not a valid cron string ({error}): use 6 fields, seconds first, e.g. \"0 */15 9-15 * * Mon-Fri\", or \"\" to disable"
)]
pub struct JobError {
    pub job: &'static str,
    pub expr: String,
    pub error: String,
}

/// The parsed schedules plus the clock they are evaluated against.
pub struct Scheduler {
    jobs: Vec<(Job, Schedule)>,
    clock: Arc<dyn Clock>,
}

/// Parses one cron string; `Ok(None)` when it is empty (the job is disabled).
pub fn parse_schedule(job: Job, expr: &str) -> Result<Option<Schedule>, JobError> {
    let e = expr.trim();
    if e.is_empty() {
        return Ok(None);
    }
    let err = |error: String| JobError {
        job: job.name(),
        expr: expr.to_string(),
        error,
    };
    let fields = e.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(err(format!("it has {fields} fields")));
    }
    Schedule::from_str(e)
        .map(Some)
        .map_err(|x| err(x.to_string()))
}

impl Scheduler {
    /// Parses every schedule; reports the first invalid one. Empty strings disable their job.
    pub fn from_settings(s: &ScheduleSettings, clock: Arc<dyn Clock>) -> Result<Self, JobError> {
        let mut jobs = Vec::new();
        for job in Job::ALL {
            if let Some(schedule) = parse_schedule(job, job.expr(s))? {
                jobs.push((job, schedule));
            }
        }
        Ok(Self { jobs, clock })
    }

    fn schedule(&self, job: Job) -> Option<&Schedule> {
        self.jobs.iter().find(|(j, _)| *j == job).map(|(_, s)| s)
    }

    /// Whether `job` is scheduled (its string was not empty).
    pub fn is_enabled(&self, job: Job) -> bool {
        self.schedule(job).is_some()
    }

    /// The next firing of `job` strictly after `after`, in UTC (evaluated in IST).
    pub fn next_fire_after(&self, job: Job, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule(job)?
            .after(&after.with_timezone(&IST))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The next firing of `job` after the clock's now (what /status shows as the next scan).
    pub fn next_fire(&self, job: Job) -> Option<DateTime<Utc>> {
        self.next_fire_after(job, self.clock.now())
    }

    /// Runs every enabled job until `shutdown`; returns when all job loops have stopped.
    /// A firing that is still running when the next one is due makes that one skip, rather
    /// than pile up.
    pub async fn run(
        self: Arc<Self>,
        handler: Arc<dyn CommandHandler>,
        shutdown: CancellationToken,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        for (job, _) in &self.jobs {
            let job = *job;
            let Some(command) = job.command() else {
                tracing::info!(
                    job = job.name(),
                    "schedule ignored: not supported by this build"
                );
                continue;
            };
            let me = self.clone();
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { me.job_loop(job, command, handler, shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn job_loop(
        &self,
        job: Job,
        command: Command,
        handler: Arc<dyn CommandHandler>,
        shutdown: CancellationToken,
    ) {
        loop {
            let Some(at) = self.next_fire(job) else {
                tracing::info!(job = job.name(), "no further firings");
                return;
            };
            // Sleep in short steps and re-check the clock: a settable clock (tests, replay) can
            // jump, and wall time and the clock can drift apart.
            loop {
                let wait = (at - self.clock.now())
                    .to_std()
                    .unwrap_or_default()
                    .min(std::time::Duration::from_secs(1));
                if wait.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
            tracing::debug!(job = job.name(), at = %at, "job firing");
            let req = Request {
                command: command.clone(),
                actor: Actor::Scheduler,
            };
            match handler.handle(req).await {
                Ok(reply) => tracing::info!(job = job.name(), ?reply, "job done"),
                // A passing failure is retried by the job's next run; anything else needs the
                // operator, so it is logged as an error.
                Err(e) if e.is_recoverable() => {
                    tracing::warn!(job = job.name(), error = %e, "job failed; its next run retries")
                }
                Err(e) => tracing::error!(job = job.name(), error = %e, "job failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn scheduler(s: &ScheduleSettings) -> Scheduler {
        Scheduler::from_settings(s, Arc::new(ManualClock::new(utc(2026, 11, 25, 0, 0)))).unwrap()
    }

    #[test]
    fn scan_fires_every_15_minutes_in_market_hours_ist() {
        let s = scheduler(&ScheduleSettings::default());
        // Wed 25 Nov 2026 08:50 IST = 03:20 UTC: the first scan is 09:00 IST = 03:30 UTC.
        let mut t = utc(2026, 11, 25, 3, 20);
        let mut fires = Vec::new();
        for _ in 0..28 {
            let n = s.next_fire_after(Job::Scan, t).unwrap();
            fires.push(n);
            t = n;
        }
        assert_eq!(fires[0], utc(2026, 11, 25, 3, 30));
        assert_eq!(fires[1], utc(2026, 11, 25, 3, 45));
        // 15:45 IST = 10:15 UTC is the last of the day (hours 9-15 inclusive).
        assert_eq!(fires[27], utc(2026, 11, 25, 10, 15));
        let next = s.next_fire_after(Job::Scan, fires[27]).unwrap();
        // Thursday 09:00 IST.
        assert_eq!(next, utc(2026, 11, 26, 3, 30));
    }

    #[test]
    fn weekends_are_skipped() {
        let s = scheduler(&ScheduleSettings::default());
        // Friday 27 Nov 2026 16:00 IST -> Monday 30 Nov 09:00 IST.
        let fri_evening = utc(2026, 11, 27, 10, 30);
        assert_eq!(
            s.next_fire_after(Job::Scan, fri_evening),
            Some(utc(2026, 11, 30, 3, 30))
        );
        assert_eq!(
            s.next_fire_after(Job::SquareOff, fri_evening),
            Some(utc(2026, 11, 30, 9, 45))
        );
    }

    #[test]
    fn square_off_and_sweep() {
        let s = scheduler(&ScheduleSettings::default());
        // 15:15 IST = 09:45 UTC.
        assert_eq!(
            s.next_fire_after(Job::SquareOff, utc(2026, 11, 25, 3, 0)),
            Some(utc(2026, 11, 25, 9, 45))
        );
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 30).unwrap();
        assert_eq!(
            s.next_fire_after(Job::ExpirySweep, t),
            Some(utc(2026, 11, 25, 3, 1))
        );
    }

    #[test]
    fn exit_check_runs_every_minute_in_market_hours_and_sends_check_exits() {
        let s = scheduler(&ScheduleSettings::default());
        assert_eq!(Job::ExitCheck.command(), Some(Command::CheckExits));
        // 09:00:30 IST = 03:30:30 UTC; then each minute, and nothing after 15:59:30 IST.
        let first = s
            .next_fire_after(Job::ExitCheck, utc(2026, 11, 25, 3, 0))
            .unwrap();
        assert_eq!(
            first,
            Utc.with_ymd_and_hms(2026, 11, 25, 3, 30, 30).unwrap()
        );
        let second = s.next_fire_after(Job::ExitCheck, first).unwrap();
        assert_eq!((second - first).num_seconds(), 60);
        let after_close = s
            .next_fire_after(Job::ExitCheck, utc(2026, 11, 25, 10, 30))
            .unwrap();
        assert_eq!(
            after_close,
            Utc.with_ymd_and_hms(2026, 11, 26, 3, 30, 30).unwrap()
        );
    }

    #[test]
    fn next_fire_uses_the_clock() {
        let clock = ManualClock::new(utc(2026, 11, 25, 3, 20));
        let s = Scheduler::from_settings(&ScheduleSettings::default(), Arc::new(clock.clone()))
            .unwrap();
        assert_eq!(s.next_fire(Job::Scan), Some(utc(2026, 11, 25, 3, 30)));
        clock.set(utc(2026, 11, 25, 3, 30));
        assert_eq!(s.next_fire(Job::Scan), Some(utc(2026, 11, 25, 3, 45)));
    }

    #[test]
    fn empty_disables_and_bad_strings_name_the_job() {
        let s = ScheduleSettings {
            scan: "".into(),
            ..ScheduleSettings::default()
        };
        let sch = scheduler(&s);
        assert!(!sch.is_enabled(Job::Scan));
        assert_eq!(sch.next_fire(Job::Scan), None);
        assert!(sch.is_enabled(Job::ExpirySweep));

        let bad = ScheduleSettings {
            square_off: "15 15 * * Mon-Fri".into(),
            ..ScheduleSettings::default()
        };
        let e = Scheduler::from_settings(&bad, Arc::new(ManualClock::new(utc(2026, 1, 1, 0, 0))))
            .err()
            .unwrap();
        assert_eq!(e.job, "square_off");
        assert!(e.to_string().contains("5 fields"), "{e}");
        let garbage = ScheduleSettings {
            expiry_sweep: "0 * * * * Funday".into(),
            ..ScheduleSettings::default()
        };
        let e =
            Scheduler::from_settings(&garbage, Arc::new(ManualClock::new(utc(2026, 1, 1, 0, 0))))
                .err()
                .unwrap();
        assert_eq!(e.job, "expiry_sweep");
    }
}
