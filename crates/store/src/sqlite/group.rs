//! Group commit: callers queue jobs; whoever holds the commit lock next runs every queued job in
//! one durable transaction and answers each caller. A caller whose job another leader already
//! ran returns without waiting for the lock.
use phivault_core::StoreError;
use std::future::Future;
use tokio::sync::oneshot;

pub(crate) struct Group<J> {
    queue: std::sync::Mutex<Vec<J>>,
    lock: tokio::sync::Mutex<()>,
}

fn stopped(_: oneshot::error::RecvError) -> StoreError {
    StoreError::Unavailable {
        context: "group commit",
        detail: "the committing task stopped".into(),
    }
}

impl<J> Group<J> {
    pub(crate) fn new() -> Self {
        Self {
            queue: std::sync::Mutex::new(Vec::new()),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Queues `job` (which answers through the sender paired with `answer`) and waits for it
    /// to be run, by another leader or by this caller.
    pub(crate) async fn submit<R, F, Fut>(
        &self,
        job: J,
        mut answer: oneshot::Receiver<Result<R, StoreError>>,
        run: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(Vec<J>) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(job);
        tokio::select! {
            biased;
            done = &mut answer => return done.map_err(stopped)?,
            _leader = self.lock.lock() => {
                let jobs: Vec<J> =
                    std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
                if !jobs.is_empty() {
                    run(jobs).await;
                }
            }
        }
        answer.await.map_err(stopped)?
    }
}
