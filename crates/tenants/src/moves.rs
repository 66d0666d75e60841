//! Moves of customer databases between data centers and nodes (DB-8;
//! issue 30, items 5 and 8): the control-plane side of [`crate::transfer`].
//!
//! A move is asked for on the database's home node, which records the
//! sending node and the receiving one (itself when it serves the
//! destination, else the live node of that region with the fewest
//! databases) and queues a job on itself. The job sends the database in
//! rounds while it keeps taking writes, pauses it for the last round, and
//! the receiving node switches the home in one conditional update. Each
//! step checks where things stand first, so a move interrupted anywhere (a
//! node killed, a job retried) resumes or is settled: before the switch
//! the copy is sent again or rolled back, after it only the erase of the
//! old copy remains.

use seldesk_domain::Fault;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use seldesk_domain::Actor;
use sqlx::Row;

use crate::service::{CustomerDb, JOB_MOVE};
use crate::transfer::{Destination, Manifest, Sender, Sent, Step, Transfer};
use crate::{Databases, TenantError, blocking};

/// How long a node remembers that it sent a database away.
const MOVED_AWAY_FOR: Duration = Duration::from_secs(30);

/// How long a round waits for readers to let the file be held.
const ROUND_PATIENCE: Duration = Duration::from_secs(10);

/// The same for the last round, while writes wait.
const LAST_ROUND_PATIENCE: Duration = Duration::from_secs(2);

/// What this node's moves did since it started (its `/metrics`).
#[derive(Debug, Default)]
pub struct MoveStats {
    pub in_progress: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub finished: AtomicU64,
    pub failed: AtomicU64,
    pub last_pause_ms: AtomicU64,
}

/// Where a move stands in the control plane.
struct MoveRow {
    account_id: String,
    region: String,
    status: String,
    home: Option<String>,
    from: Option<String>,
    to: Option<String>,
    source: Option<String>,
    target: Option<String>,
}

impl Databases {
    /// Asks to move a database to another hosting region (DB-8). The move
    /// runs as a job on the database's home node; the database keeps
    /// working while it is copied, and holds writes only for the last
    /// moment of the switch.
    pub async fn request_move(&self, account_id: &str, id: &str, region: &str) -> Result<CustomerDb, TenantError> {
        let d = self.get(account_id, id).await?;
        let target = self
            .policy
            .region(region)
            .filter(|r| r.hosting)
            .ok_or_else(|| TenantError::invalid("region", format!("`{region}` is not a hosting region.")))?;
        if target.id == d.region {
            return Err(TenantError::invalid("region", format!("The database is already in {}.", target.name)));
        }
        let actor = Actor::Person { id: account_id.into() };
        // The sending end is this node: the database must live here.
        self.resident(&d.region, &actor, Some(&format!("db:{}", d.id))).await?;
        let receiver = self.receiver(&target.id, &target.name).await?;
        self.start_move(&d, &target.id, receiver, &actor).await?;
        self.get(account_id, id).await
    }

    /// Moves a database to another node of its own region (a drain), as
    /// `actor` (staff or the system).
    pub async fn move_to_node(&self, id: &str, node: &str, actor: &Actor) -> Result<(), TenantError> {
        let d = self.find(id).await?;
        let me = self.node_name.as_deref();
        let (home, _) = self.home(id).await?.map(|h| (h.1, h.0)).unwrap_or_default();
        if home.as_deref() == Some(node) || (home.is_none() && me == Some(node)) {
            return Err(TenantError::invalid("node", format!("The database already lives on `{node}`.")));
        }
        let target = self.nodes.list().await?.into_iter().find(|n| n.name == node && n.live);
        match target {
            Some(n) if n.regions.contains(&d.region) => {}
            Some(_) => {
                return Err(TenantError::invalid("node", format!("Node `{node}` does not serve {}.", d.region)));
            }
            None => return Err(TenantError::Unavailable(format!("Node `{node}` is not live; nothing was moved."))),
        }
        self.start_move(&d, &d.region, Some(node.to_string()), actor).await
    }

    /// The node that receives a database moving to `region`: this one if it
    /// serves the region, else the placement's choice. None: this node
    /// without a name.
    async fn receiver(&self, region: &str, name: &str) -> Result<Option<String>, TenantError> {
        if self.files.serves(region) {
            return Ok(self.node_name.clone());
        }
        match self.nodes.place(region, self.node_name.as_deref()).await? {
            Some(n) => Ok(Some(n.name)),
            None => Err(TenantError::Unavailable(format!(
                "No data center in {name} is available right now; nothing was moved. Please try again later."
            ))),
        }
    }

    async fn start_move(
        &self,
        d: &CustomerDb,
        to_region: &str,
        receiver: Option<String>,
        actor: &Actor,
    ) -> Result<(), TenantError> {
        let source = self.home(&d.id).await?.and_then(|h| h.1).or_else(|| self.node_name.clone());
        let done = sqlx::query(
            "UPDATE databases SET status = 'moving', moving_from = region, moving_to = $2, moving_source = $3,
                 moving_target = $4, move_done = 0, move_total = 0
             WHERE id = $1 AND status = 'active'",
        )
        .bind(&d.id)
        .bind(to_region)
        .bind(source.clone())
        .bind(receiver.clone())
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(TenantError::Conflict("Only an active database can be moved.".into()));
        }
        self.audit
            .record(
                actor,
                "database.move_requested",
                Some(seldesk_domain::Subject::person(&d.account_id).as_str()),
                Some(&format!("db:{}", d.id)),
                serde_json::json!({ "from": d.region, "to": to_region, "node": receiver }),
            )
            .await?;
        let mut job = seldesk_jobs::NewJob::of(&crate::service::MoveJob {
            database: d.id.clone(),
            region: to_region.to_string(),
        })
        .dedupe(format!("move:{}:{}", d.id, uuid::Uuid::now_v7().simple()));
        // The node that holds the database sends it (its writer pauses there).
        if let Some(home) = source {
            job = job.on_node(home);
        }
        self.queue.enqueue(job).await.map_err(|e| TenantError::Internal(Fault::new("cannot schedule the move", e)))?;
        Ok(())
    }

    async fn move_row(&self, id: &str) -> Result<Option<MoveRow>, TenantError> {
        let row = sqlx::query(
            "SELECT account_id, region, status, home_node, moving_from, moving_to, moving_source, moving_target
             FROM databases WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(MoveRow {
            account_id: r.try_get("account_id")?,
            region: r.try_get("region")?,
            status: r.try_get("status")?,
            home: r.try_get("home_node")?,
            from: r.try_get("moving_from")?,
            to: r.try_get("moving_to")?,
            source: r.try_get("moving_source")?,
            target: r.try_get("moving_target")?,
        }))
    }

    /// Whether `node` is this node (a nameless node is every nameless one).
    fn is_me(&self, node: Option<&str>) -> bool {
        node.is_none() || node == self.node_name.as_deref()
    }

    /// Carries out a move (the job's work; module docs).
    pub async fn run_move(&self, id: &str, to_region: &str) -> Result<(), TenantError> {
        let Some(m) = self.move_row(id).await? else { return Ok(()) };
        if m.status != "moving" {
            // Switched already (only the old copy's erase may be left), or
            // rolled back.
            if let Some(from) = m.from.clone() {
                self.finish_move(id, &m, &from, None).await?;
            }
            return Ok(());
        }
        let from = m.region.clone();
        let t = Transfer {
            database: id.to_string(),
            from_region: from.clone(),
            to_region: m.to.clone().unwrap_or_else(|| to_region.to_string()),
            source: m.source.clone(),
            target: m.target.clone(),
        };
        let dest: Arc<dyn Destination> = if self.is_me(t.target.as_deref()) {
            Arc::new(self.clone())
        } else {
            let node = self.nodes.list().await?.into_iter().find(|n| Some(&n.name) == t.target.as_ref() && n.live);
            match (node, self.transport.get()) {
                (Some(node), Some(link)) => link.to(&node),
                (None, _) => {
                    let e = TenantError::Unavailable(format!(
                        "the receiving node {} is not live; the move was called off",
                        t.target.as_deref().unwrap_or("?")
                    ));
                    return self.failed_move(&t, &m, None, e).await;
                }
                (_, None) => {
                    let e = TenantError::Internal(Fault::msg("this node has no cluster link to send databases with"));
                    return self.failed_move(&t, &m, None, e).await;
                }
            }
        };
        let stats = &self.move_stats;
        stats.in_progress.fetch_add(1, Ordering::Relaxed);
        let sent = self.send_copy(dest.as_ref(), &t).await;
        stats.in_progress.fetch_sub(1, Ordering::Relaxed);
        match sent {
            Ok(sent) => {
                stats.finished.fetch_add(1, Ordering::Relaxed);
                stats.last_pause_ms.store(sent.paused_ms, Ordering::Relaxed);
                let Some(now) = self.move_row(id).await? else { return Ok(()) };
                self.finish_move(id, &now, &from, Some(sent)).await
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                self.failed_move(&t, &m, Some(dest.as_ref()), e).await
            }
        }
    }

    /// A move that failed before or during its switch: if the switch went
    /// through after all (its answer lost), the move is finished; else the
    /// database stays where it was, working, and the receiver is told to
    /// drop its copy.
    async fn failed_move(
        &self,
        t: &Transfer,
        m: &MoveRow,
        dest: Option<&dyn Destination>,
        e: TenantError,
    ) -> Result<(), TenantError> {
        let id = t.database.as_str();
        let rolled = sqlx::query(
            "UPDATE databases SET status = 'active', moving_from = NULL, moving_to = NULL, moving_source = NULL,
                 moving_target = NULL, move_done = 0, move_total = 0
             WHERE id = $1 AND status = 'moving' AND region = $2",
        )
        .bind(id)
        .bind(&t.from_region)
        .execute(self.db.pool())
        .await?;
        if rolled.rows_affected() == 0 {
            // Not moving any more: switched (the answer was lost) or removed.
            if let Some(now) = self.move_row(id).await?
                && now.status != "moving"
                && now.from.is_some()
            {
                return self.finish_move(id, &now, &t.from_region, None).await;
            }
        }
        self.note_moved_away(id, false);
        self.open.resume(&t.from_region, id);
        if let Some(dest) = dest
            && let Err(abort) = dest.abort(t).await
        {
            // The receiver drops an unswitched copy itself when it starts.
            tracing::warn!(database = %id, error = %abort, "the receiving node could not drop its copy now");
        }
        if rolled.rows_affected() == 1 {
            self.audit
                .record(
                    &Actor::System,
                    "database.move_failed",
                    Some(seldesk_domain::Subject::person(&m.account_id).as_str()),
                    Some(&format!("db:{id}")),
                    serde_json::json!({ "from": t.from_region, "to": t.to_region, "node": t.target, "why": e.to_string() }),
                )
                .await?;
        }
        Err(e)
    }

    /// Sends the database to `dest` (module docs of [`crate::transfer`]):
    /// rounds while it takes writes, then the last round with its writer
    /// paused, then the commit that switches its home.
    async fn send_copy(&self, dest: &dyn Destination, t: &Transfer) -> Result<Sent, TenantError> {
        let id = t.database.as_str();
        let dir = self.files.dir(&t.from_region, id)?;
        if !dir.join(crate::transfer::DB_FILE).is_file() {
            return Err(TenantError::NotFound("The database file is missing.".into()));
        }
        dest.begin(t).await?;
        let mut sender = Sender::new(dir);
        let total = self.files.size(&t.from_region, id);
        let mut progress = Progress { at: Instant::now(), db: self, sent: 0, total };
        let mut last = usize::MAX;
        loop {
            let first = sender.rounds == 0;
            let (s, listed) = self
                .round(sender, dest, t, &mut progress, move |s| match first {
                    true => s.first().map(|()| usize::MAX),
                    false => s.catch_up(ROUND_PATIENCE),
                })
                .await?;
            sender = s;
            if !first {
                last = listed;
            }
            if !sender.more_rounds(last) {
                break;
            }
        }
        // The last round: the writer finishes what is queued and holds the
        // rest; everything acknowledged is in the file it sends. From now
        // on a request that reaches this node is told to retry (it finds
        // the database here again if the move fails, else at its new home).
        self.note_moved_away(id, true);
        self.open.pause(&t.from_region, id).await?;
        let paused = Instant::now();
        let manifest = std::sync::Arc::new(std::sync::Mutex::new(None::<Manifest>));
        let (sender, _) = {
            let slot = manifest.clone();
            self.round(sender, dest, t, &mut progress, move |s| {
                let m = s.last_round(LAST_ROUND_PATIENCE)?;
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(m);
                }
                Ok(0)
            })
            .await?
        };
        let manifest = manifest
            .lock()
            .ok()
            .and_then(|mut m| m.take())
            .ok_or_else(|| TenantError::Internal(Fault::msg("the last round made no manifest")))?;
        dest.commit(t, &manifest).await?;
        Ok(Sent { rounds: sender.rounds, bytes: sender.bytes, paused_ms: paused.elapsed().as_millis() as u64 })
    }

    /// Runs one round of `sender` off the async threads while its batches
    /// go to `dest` as they fill.
    async fn round(
        &self,
        mut sender: Sender,
        dest: &dyn Destination,
        t: &Transfer,
        progress: &mut Progress<'_>,
        work: impl FnOnce(&mut Sender) -> Result<usize, TenantError> + Send + 'static,
    ) -> Result<(Sender, usize), TenantError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        sender.sending_to(tx);
        let produce = blocking(move || {
            let result = work(&mut sender);
            // Whatever happened, the channel closes so the sending side ends.
            sender.stop_sending();
            Ok((sender, result))
        });
        let consume = async {
            while let Some(batch) = rx.recv().await {
                let len = batch.len() as u64;
                dest.send(t, batch).await?;
                self.move_stats.sent_bytes.fetch_add(len, Ordering::Relaxed);
                progress.tick(t, len).await;
            }
            Ok::<_, TenantError>(())
        };
        let (produced, consumed) = tokio::join!(produce, consume);
        let (sender, result) = produced?;
        consumed?;
        let listed = result?;
        progress.record(t).await;
        Ok((sender, listed))
    }

    /// After the switch: erases the old copy (on the node that sent it),
    /// then clears the move. `sent`: what this run's transfer did.
    async fn finish_move(&self, id: &str, m: &MoveRow, from: &str, sent: Option<Sent>) -> Result<(), TenantError> {
        if !self.is_me(m.source.as_deref()) {
            return Ok(());
        }
        let to = m.to.clone().unwrap_or_else(|| m.region.clone());
        // Requests that still reach this node hear to retry, not "missing".
        self.note_moved_away(id, true);
        // The folder is erased unless it is the database's home now (a move
        // between two nodes of one region keeps the name on both).
        let home_here = m.region == from && self.is_me(m.home.as_deref());
        if !home_here {
            let (files, from, id) = (self.files.clone(), from.to_string(), id.to_string());
            blocking(move || files.remove_stale_copy(&from, &id, true)).await?;
        }
        self.open.resume(from, id);
        let cleared = sqlx::query(
            "UPDATE databases SET moving_from = NULL, moving_to = NULL, moving_source = NULL, moving_target = NULL,
                 move_done = 0, move_total = 0
             WHERE id = $1 AND moving_from IS NOT NULL AND status <> 'moving'",
        )
        .bind(id)
        .execute(self.db.pool())
        .await?;
        if cleared.rows_affected() == 1 {
            let mut details = serde_json::json!({ "from": from, "to": to, "node": m.home });
            if let Some(s) = sent {
                details["rounds"] = s.rounds.into();
                details["bytes"] = s.bytes.into();
                details["paused_ms"] = s.paused_ms.into();
            }
            self.audit
                .record(
                    &Actor::System,
                    "database.moved",
                    Some(seldesk_domain::Subject::person(&m.account_id).as_str()),
                    Some(&format!("db:{id}")),
                    details,
                )
                .await?;
        }
        Ok(())
    }

    fn note_moved_away(&self, id: &str, away: bool) {
        if let Ok(mut moved) = self.moved_away.lock() {
            moved.retain(|_, at| at.elapsed() < MOVED_AWAY_FOR);
            match away {
                true => moved.insert(id.to_string(), Instant::now()),
                false => moved.remove(id),
            };
        }
    }

    /// Whether this node sent database `id` away lately (a request for it
    /// is to be retried where it lives now).
    pub fn moved_away_recently(&self, id: &str) -> bool {
        self.moved_away.lock().is_ok_and(|away| away.get(id).is_some_and(|at| at.elapsed() < MOVED_AWAY_FOR))
    }

    /// What this node's moves did since it started.
    pub fn move_stats(&self) -> &MoveStats {
        &self.move_stats
    }

    /// Sets how this node reaches others to send them databases.
    pub fn set_transport(&self, transport: Arc<dyn crate::transfer::Transport>) {
        let _ = self.transport.set(transport);
    }

    /// At start-up, before this node runs jobs: a move this node sends
    /// whose job is gone (the node died between marking the database and
    /// queueing the job, or the job failed for good) is rolled back before
    /// its switch and finished after it; copies this node received but
    /// never got the switch for are dropped. Moves with a job queued resume
    /// with it. Returns how many moves were settled.
    pub async fn recover_moves(&self) -> Result<usize, TenantError> {
        self.sweep_received().await?;
        let rows = sqlx::query(
            "SELECT d.id FROM databases d
             WHERE d.moving_from IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM jobs j WHERE j.kind = $1 AND j.status IN ('queued', 'running')
                   AND j.dedupe_key LIKE 'move:' || d.id || ':%')",
        )
        .bind(JOB_MOVE)
        .fetch_all(self.db.pool())
        .await?;
        let mut settled = 0;
        for r in &rows {
            let id: String = r.try_get("id")?;
            let Some(m) = self.move_row(&id).await? else { continue };
            if !self.is_me(m.source.as_deref()) {
                continue;
            }
            let Some(from) = m.from.clone() else { continue };
            if m.status == "moving" {
                let t = Transfer {
                    database: id.clone(),
                    from_region: m.region.clone(),
                    to_region: m.to.clone().unwrap_or_default(),
                    source: m.source.clone(),
                    target: m.target.clone(),
                };
                let dest: Option<Arc<dyn Destination>> = if self.is_me(t.target.as_deref()) {
                    Some(Arc::new(self.clone()))
                } else {
                    // Told to drop its copy now if it is up; else it does at its next start.
                    let nodes = self.nodes.list().await.unwrap_or_default();
                    let node = nodes.iter().find(|n| Some(&n.name) == t.target.as_ref() && n.live);
                    node.zip(self.transport.get()).map(|(n, link)| link.to(n))
                };
                let e = TenantError::Internal(Fault::msg("the move's job is gone"));
                let _ = self.failed_move(&t, &m, dest.as_deref(), e).await;
            } else {
                self.finish_move(&id, &m, &from, None).await?;
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// Drops received copies that never got their switch: staging folders,
    /// and folders put in place whose database lives elsewhere now. A folder
    /// whose switch went through is kept, its marker removed.
    async fn sweep_received(&self) -> Result<(), TenantError> {
        let found = {
            let files = self.files.clone();
            blocking(move || files.received_copies()).await?
        };
        for (region, id, placed) in found {
            let dir = self.files.dir(&region, &id)?;
            if !placed {
                blocking(move || crate::transfer::discard(&dir)).await?;
                continue;
            }
            let home = self.home(&id).await?;
            let mine = home.as_ref().is_some_and(|(r, h)| r == &region && self.is_me(h.as_deref()));
            blocking(move || if mine { crate::transfer::settled(&dir) } else { crate::transfer::discard(&dir) })
                .await?;
        }
        Ok(())
    }

    /// Checks that a transfer asked of this node is one the control plane
    /// expects it to receive.
    async fn expected(&self, t: &Transfer) -> Result<std::path::PathBuf, TenantError> {
        let m = self
            .move_row(&t.database)
            .await?
            .ok_or_else(|| TenantError::NotFound("No such database; nothing was received.".into()))?;
        let ok = m.status == "moving"
            && m.region == t.from_region
            && m.to.as_deref() == Some(t.to_region.as_str())
            && self.is_me(m.target.as_deref())
            && m.target == t.target;
        if !ok {
            return Err(TenantError::Conflict(
                "This node is not receiving that database; nothing was received.".into(),
            ));
        }
        // Only into a data center this node serves (RES-1), and never over
        // the database where it lives now (a move between two nodes of one
        // region sends to another node).
        if t.from_region == t.to_region && self.is_me(m.home.as_deref()) {
            return Err(TenantError::Conflict("The database already lives on this node.".into()));
        }
        self.files.dir(&t.to_region, &t.database)
    }

    /// Receiving: starts an empty copy.
    pub async fn receive_begin(&self, t: &Transfer) -> Result<(), TenantError> {
        let dir = self.expected(t).await?;
        blocking(move || crate::transfer::begin(&dir)).await
    }

    /// Receiving: applies a batch of patches.
    pub async fn receive_batch(&self, t: &Transfer, batch: Vec<u8>) -> Result<(), TenantError> {
        let dir = self.files.dir(&t.to_region, &t.database)?;
        blocking(move || crate::transfer::apply(&dir, &batch)).await
    }

    /// Receiving: checks the copy, puts it in place and switches the
    /// database's home to this node in one conditional update.
    pub async fn receive_commit(&self, t: &Transfer, m: &Manifest) -> Result<(), TenantError> {
        let dir = self.expected(t).await?;
        {
            let (dir, m) = (dir.clone(), m.clone());
            blocking(move || crate::transfer::place(&dir, &m)).await?;
        }
        let switched = sqlx::query(
            "UPDATE databases SET region = $1, status = 'active', home_node = $2, move_done = move_total
             WHERE id = $3 AND status = 'moving' AND region = $4 AND moving_to = $1",
        )
        .bind(&t.to_region)
        .bind(self.node_name.clone())
        .bind(&t.database)
        .bind(&t.from_region)
        .execute(self.db.pool())
        .await;
        let switched = match switched {
            Ok(done) => done.rows_affected() == 1,
            Err(e) => {
                // Unknown: the sender finds out from the control plane, and
                // this node's next start keeps or drops the copy by it.
                return Err(e.into());
            }
        };
        if !switched {
            blocking(move || crate::transfer::discard(&dir)).await?;
            return Err(TenantError::Conflict(
                "The database changed while it was copied (removed or called back); the copy was dropped.".into(),
            ));
        }
        // Back on a node that sent it away a moment ago: it lives here now.
        self.note_moved_away(&t.database, false);
        if let Err(e) = blocking(move || crate::transfer::settled(&dir)).await {
            // The switch stands; the marker goes at the next start.
            tracing::warn!(database = %t.database, error = %e, "could not clear a received copy's marker");
        }
        Ok(())
    }

    /// Receiving: drops an unswitched copy.
    pub async fn receive_abort(&self, t: &Transfer) -> Result<(), TenantError> {
        let dir = self.files.dir(&t.to_region, &t.database)?;
        blocking(move || crate::transfer::discard(&dir)).await
    }
}

/// The database itself receives moves within this node.
impl Destination for Databases {
    fn begin<'a>(&'a self, t: &'a Transfer) -> Step<'a, ()> {
        Box::pin(self.receive_begin(t))
    }
    fn send<'a>(&'a self, t: &'a Transfer, batch: Vec<u8>) -> Step<'a, ()> {
        Box::pin(self.receive_batch(t, batch))
    }
    fn commit<'a>(&'a self, t: &'a Transfer, m: &'a Manifest) -> Step<'a, ()> {
        Box::pin(self.receive_commit(t, m))
    }
    fn abort<'a>(&'a self, t: &'a Transfer) -> Step<'a, ()> {
        Box::pin(self.receive_abort(t))
    }
}

/// Records how far a move is for the database page, twice a second: bytes
/// sent of the database's size (catch-up rounds send more than once).
struct Progress<'a> {
    at: Instant,
    db: &'a Databases,
    sent: u64,
    total: u64,
}

impl Progress<'_> {
    async fn tick(&mut self, t: &Transfer, batch: u64) {
        self.sent += batch;
        if self.at.elapsed() >= Duration::from_millis(500) {
            self.at = Instant::now();
            self.record(t).await;
        }
    }

    async fn record(&mut self, t: &Transfer) {
        let total = self.total.max(self.sent);
        let _ = sqlx::query("UPDATE databases SET move_done = $1, move_total = $2 WHERE id = $3 AND status = 'moving'")
            .bind(i64::try_from(self.sent).unwrap_or(i64::MAX))
            .bind(i64::try_from(total).unwrap_or(i64::MAX))
            .bind(&t.database)
            .execute(self.db.db.pool())
            .await;
    }
}
