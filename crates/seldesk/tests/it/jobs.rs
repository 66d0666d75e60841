use std::collections::HashSet;
use std::sync::Arc;

use seldesk_domain::TestClock;
use seldesk_jobs::{JobStatus, NewJob, Queue, Schedule, Scheduler};
use seldesk_store::Db;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::helpers::fresh_database_url;

async fn queue_at(start: OffsetDateTime) -> (Queue, Db, TestClock, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let db = Db::connect(&fresh_database_url(dir.path()).await).await.expect("connect");
    db.migrate().await.expect("migrate");
    let clock = TestClock::new(start);
    (Queue::new(db.clone(), Arc::new(clock.clone())), db, clock, dir)
}

#[tokio::test]
async fn jobs_are_claimed_once_completed_and_deduplicated() {
    let (q, _db, _clock, _dir) = queue_at(datetime!(2026-11-25 10:00 UTC)).await;
    let id = q.enqueue(NewJob::new("demo").dedupe("demo-1")).await.expect("enqueue").expect("new");
    assert_eq!(q.enqueue(NewJob::new("demo").dedupe("demo-1")).await.expect("enqueue"), None, "deduplicated");
    let job = q.claim("w1", Duration::minutes(5)).await.expect("claim").expect("due");
    assert_eq!(job.id, id);
    assert_eq!(job.attempts, 1);
    assert!(q.claim("w2", Duration::minutes(5)).await.expect("claim").is_none(), "held by w1");
    q.complete(&job, "w1").await.expect("complete");
    assert_eq!(q.get(id).await.expect("get").expect("exists").status, JobStatus::Done);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.done, stats.queued), (1, 0));
}

#[tokio::test]
async fn future_jobs_wait_for_the_clock() {
    let (q, _db, clock, _dir) = queue_at(datetime!(2026-11-25 10:00 UTC)).await;
    q.enqueue(NewJob::new("later").run_at(datetime!(2026-11-26 10:00 UTC))).await.expect("enqueue");
    assert!(q.claim("w", Duration::minutes(5)).await.expect("claim").is_none());
    clock.advance(Duration::days(1));
    assert!(q.claim("w", Duration::minutes(5)).await.expect("claim").is_some());
}

#[tokio::test]
async fn failures_retry_with_backoff_then_fail_for_good() {
    let (q, _db, clock, _dir) = queue_at(datetime!(2026-11-25 10:00 UTC)).await;
    let id = q.enqueue(NewJob::new("flaky").max_attempts(2)).await.expect("enqueue").expect("id");
    let job = q.claim("w", Duration::minutes(5)).await.expect("claim").expect("due");
    assert_eq!(q.fail(&job, "w", "boom").await.expect("fail"), JobStatus::Queued);
    assert!(q.claim("w", Duration::minutes(5)).await.expect("claim").is_none(), "backing off");
    clock.advance(Duration::seconds(11));
    let job = q.claim("w", Duration::minutes(5)).await.expect("claim").expect("retried");
    assert_eq!(job.attempts, 2);
    assert_eq!(q.fail(&job, "w", "boom again").await.expect("fail"), JobStatus::Failed);
    let stored = q.get(id).await.expect("get").expect("exists");
    assert_eq!(stored.status, JobStatus::Failed);
    assert_eq!(stored.last_error.as_deref(), Some("boom again"));
}

#[tokio::test]
async fn a_crashed_workers_job_is_claimed_again_after_its_lease() {
    let (q, _db, clock, _dir) = queue_at(datetime!(2026-11-25 10:00 UTC)).await;
    q.enqueue(NewJob::new("long")).await.expect("enqueue");
    let first = q.claim("dead-node", Duration::minutes(10)).await.expect("claim").expect("due");
    clock.advance(Duration::minutes(9));
    assert!(q.claim("other", Duration::minutes(10)).await.expect("claim").is_none());
    clock.advance(Duration::minutes(2));
    let again = q.claim("other", Duration::minutes(10)).await.expect("claim").expect("lease over");
    assert_eq!(again.id, first.id);
    q.complete(&first, "dead-node").await.expect("stale complete is ignored");
    assert_eq!(q.get(first.id).await.expect("get").expect("exists").status, JobStatus::Running);
}

#[tokio::test]
async fn concurrent_workers_never_claim_the_same_job() {
    let (q, _db, _clock, _dir) = queue_at(datetime!(2026-11-25 10:00 UTC)).await;
    for i in 0..40 {
        q.enqueue(NewJob::new("bulk").dedupe(format!("bulk-{i}"))).await.expect("enqueue");
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = q.claim(&format!("w{w}"), Duration::minutes(5)).await.expect("claim") {
                mine.push(job.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every job claimed");
    assert_eq!(unique.len(), 40, "none twice");
}

#[tokio::test]
async fn a_schedule_fires_once_per_cluster() {
    let (q, db, clock, _dir) = queue_at(datetime!(2026-11-25 02:29:30 UTC)).await;
    let schedule = Schedule::parse("nightly", "demo.nightly", "30 2 * * *").expect("cron");
    // Three nodes share one control plane.
    let nodes: Vec<Scheduler> = (0..3).map(|_| Scheduler::new(q.clone(), db.clone(), vec![schedule.clone()])).collect();
    let mut enqueued = 0;
    for n in &nodes {
        enqueued += n.tick().await.expect("tick").len();
    }
    assert_eq!(enqueued, 1, "yesterday's missed fire is caught up once");
    let _ = q.claim("w", Duration::minutes(1)).await.expect("claim").expect("yesterday's fire");
    clock.advance(Duration::seconds(30));
    let mut enqueued = 0;
    for n in &nodes {
        enqueued += n.tick().await.expect("tick").len();
    }
    assert_eq!(enqueued, 1, "today's 02:30 fire, once");
    let job = q.claim("w", Duration::minutes(1)).await.expect("claim").expect("today's fire");
    assert_eq!(job.kind, "demo.nightly");
    assert_eq!(job.run_at, datetime!(2026-11-25 02:30 UTC));
    for n in &nodes {
        assert!(n.tick().await.expect("tick").is_empty(), "no second run of the same fire");
    }
}

// promise: BAK-1
/// Backups and export sweeps are about one node's databases: their
/// schedules fire on every node, and only that node runs its job.
#[tokio::test]
async fn a_per_node_schedule_fires_on_every_node_and_each_runs_its_own() {
    let (q, db, clock, _dir) = queue_at(datetime!(2026-11-25 00:59:30 UTC)).await;
    let backup = Schedule::parse("backup", "backup.run", "0 1 * * *").expect("cron").per_node(true);
    let (a, b) = (q.clone().for_node("node-a"), q.clone().for_node("node-b"));
    let nodes: Vec<Scheduler> =
        [&a, &b, &a].iter().map(|q| Scheduler::new((*q).clone(), db.clone(), vec![backup.clone()])).collect();
    clock.advance(Duration::seconds(30));
    let mut enqueued = 0;
    for n in &nodes {
        enqueued += n.tick().await.expect("tick").len();
    }
    assert_eq!(enqueued, 2, "one fire per node, however many schedulers each has");
    assert!(q.claim("anonymous", Duration::minutes(1)).await.expect("claim").is_none(), "no node, no node's job");
    let mine = a.claim("a-w1", Duration::minutes(1)).await.expect("claim").expect("a's job");
    assert!(a.claim("a-w2", Duration::minutes(1)).await.expect("claim").is_none(), "not b's job");
    let theirs = b.claim("b-w1", Duration::minutes(1)).await.expect("claim").expect("b's job");
    assert_ne!(mine.id, theirs.id);
    // A job for any node is still anyone's.
    q.enqueue(NewJob::new("anyone")).await.expect("enqueue");
    assert!(b.claim("b-w2", Duration::minutes(1)).await.expect("claim").is_some());
}

#[tokio::test]
async fn finished_jobs_are_purged_after_their_age() {
    let (q, _db, clock, _dir) = queue_at(datetime!(2026-11-25 10:00 UTC)).await;
    q.enqueue(NewJob::new("x")).await.expect("enqueue");
    let job = q.claim("w", Duration::minutes(1)).await.expect("claim").expect("due");
    q.complete(&job, "w").await.expect("done");
    assert_eq!(q.purge_finished(Duration::days(30)).await.expect("purge"), 0);
    clock.advance(Duration::days(31));
    assert_eq!(q.purge_finished(Duration::days(30)).await.expect("purge"), 1);
}

#[tokio::test]
async fn the_server_runs_the_scheduled_retention_job() {
    let app = crate::helpers::spawn_app_with(
        |c| c.jobs = seldesk::config::JobsConfig { workers: 1, poll_ms: 50, ..Default::default() },
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    let services = app.app().services();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The job records its run before the worker marks it done, so wait for both.
    loop {
        let report = services.retention.report().await.expect("report");
        let stats = services.queue.stats().await.expect("stats");
        if report.last_run.is_some() && stats.done >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retention job ran and completed within 20 s: last run {:?}, {stats:?}",
            report.last_run
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.stop().await;
}
