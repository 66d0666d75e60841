use std::str::FromStr;

use chrono::{DateTime, Utc};
use seldesk_store::{Db, to_millis};
use time::OffsetDateTime;

use crate::{JobError, NewJob, Queue};

/// A cron string that could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "schedule `{name}`: `{cron}` is not a cron expression ({reason}); write five fields such as \"30 2 * * *\" (02:30 every day), or six with seconds first"
)]
pub struct ScheduleError {
    pub name: String,
    pub cron: String,
    pub reason: String,
}

/// A named cron schedule that enqueues a job of kind `job` at each fire.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub job: String,
    cron: cron::Schedule,
    /// Fires once on every node (for the node's own databases), not once
    /// per cluster.
    pub per_node: bool,
}

fn to_chrono(t: OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

fn from_chrono(t: DateTime<Utc>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Schedule {
    /// Parses a standard five-field cron string (or six fields, seconds first).
    pub fn parse(name: &str, job: &str, expr: &str) -> Result<Self, ScheduleError> {
        let fields = expr.split_whitespace().count();
        let full = if fields == 5 { format!("0 {expr}") } else { expr.to_string() };
        let cron = cron::Schedule::from_str(&full).map_err(|e| ScheduleError {
            name: name.to_string(),
            cron: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self { name: name.to_string(), job: job.to_string(), cron, per_node: false })
    }

    /// A schedule that fires on every node, each running its own job.
    pub fn per_node(mut self, per_node: bool) -> Self {
        self.per_node = per_node;
        self
    }

    /// The latest fire time at or before `now`.
    pub fn last_fire(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = to_chrono(now + time::Duration::seconds(1));
        self.cron.after(&after).next_back().map(from_chrono)
    }

    /// The next fire time after `now`.
    pub fn next_fire(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.cron.after(&to_chrono(now)).next().map(from_chrono)
    }

    /// The dedupe key of one fire: the same on every node.
    pub fn fire_key(&self, fire: OffsetDateTime) -> String {
        format!("schedule:{}@{}", self.name, fire.unix_timestamp())
    }
}

/// Turns schedules into jobs, once per fire across the cluster.
#[derive(Debug, Clone)]
pub struct Scheduler {
    queue: Queue,
    db: Db,
    schedules: Vec<Schedule>,
}

impl Scheduler {
    pub fn new(queue: Queue, db: Db, schedules: Vec<Schedule>) -> Self {
        Self { queue, db, schedules }
    }

    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }

    /// Enqueues the latest due fire of every schedule (a node that was down
    /// catches up once, not once per missed fire). Returns the jobs this node
    /// enqueued; another node may already have enqueued the rest.
    pub async fn tick(&self) -> Result<Vec<i64>, JobError> {
        let now = self.queue.clock().now();
        let mut enqueued = Vec::new();
        for s in &self.schedules {
            let Some(fire) = s.last_fire(now) else {
                continue;
            };
            let mut job = NewJob::new(&s.job)
                .dedupe(s.fire_key(fire))
                .run_at(fire)
                .payload(serde_json::json!({ "schedule": s.name, "fire": fire.unix_timestamp() }));
            if s.per_node
                && let Some(node) = self.queue.node()
            {
                // One fire per node, run by that node.
                job = job.dedupe(format!("{}:{node}", s.fire_key(fire))).on_node(node);
            }
            if let Some(id) = self.queue.enqueue(job).await? {
                enqueued.push(id);
                sqlx::query(
                    "INSERT INTO schedule_state (name, last_fire) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET last_fire = excluded.last_fire",
                )
                .bind(&s.name)
                .bind(to_millis(fire))
                .execute(self.db.pool())
                .await?;
            }
        }
        Ok(enqueued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn five_field_cron_fires_at_the_minute() {
        let s = Schedule::parse("retention", "retention.run", "30 2 * * *").expect("valid");
        let now = datetime!(2026-11-25 12:00 UTC);
        assert_eq!(s.last_fire(now), Some(datetime!(2026-11-25 02:30 UTC)));
        assert_eq!(s.next_fire(now), Some(datetime!(2026-11-26 02:30 UTC)));
        let exactly = datetime!(2026-11-25 02:30 UTC);
        assert_eq!(s.last_fire(exactly), Some(exactly), "a fire at now is due");
    }

    #[test]
    fn bad_cron_is_explained() {
        let err = Schedule::parse("backup", "backup.run", "every day").expect_err("refused");
        assert!(err.to_string().contains("backup"), "{err}");
        assert!(err.to_string().contains("five fields"), "{err}");
    }
}
