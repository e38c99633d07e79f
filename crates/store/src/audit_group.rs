//! Group commit for audit appends, shared by both backends: callers queue their drafts with a
//! committer task (one per opened store); it takes every append queued while its previous
//! commit ran and makes them durable in one transaction, then answers each caller. No caller
//! waits on a lock or on another caller's wake-up, only on its own answer.
use futures_util::FutureExt;
use phivault_core::{ChainFn, StoreError};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most appends one commit takes: more wait for the next.
const GROUP_MAX: usize = 256;

/// One caller's drafts and where its sequence numbers go.
pub(crate) struct AuditJob {
    pub(crate) drafts: Vec<(i64, String)>,
    pub(crate) chain: Arc<ChainFn>,
    pub(crate) done: Answer,
}

/// Where one caller's sequence numbers (or the group's error) go.
pub(crate) type Answer = oneshot::Sender<Result<Vec<u64>, StoreError>>;
/// One caller's drafts (recorded_at in ms, event JSON without its seq) and chain function.
pub(crate) type Work = (Vec<(i64, String)>, Arc<ChainFn>);
/// A new row: (seq, recorded_at, event, mac).
pub(crate) type NewRow = (i64, i64, String, Vec<u8>);
/// The (sequence number, MAC) of the last event.
pub(crate) type Head = (u64, Vec<u8>);
/// The rows to insert, each job's sequence numbers, and the new head.
pub(crate) type Chained = (Vec<NewRow>, Vec<Vec<u64>>, Head);

/// The sending side of a committer task; the task stops when this is dropped.
#[derive(Debug)]
pub(crate) struct Committer {
    jobs: mpsc::UnboundedSender<AuditJob>,
}

impl Committer {
    /// Starts the committer task on the current Tokio runtime. `commit` runs one group and
    /// answers every job in it: the sequence numbers, or the same error for all.
    pub(crate) fn start<F, Fut>(mut commit: F) -> Committer
    where
        F: FnMut(Vec<AuditJob>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (jobs, mut queue) = mpsc::unbounded_channel::<AuditJob>();
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match queue.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                // A panic in one commit fails that group's callers (their answer channels are
                // dropped: "stopped"), not every later append.
                let _ = AssertUnwindSafe(commit(group)).catch_unwind().await;
            }
        });
        Committer { jobs }
    }

    /// Queues `drafts` and waits until they are durable (or failed).
    pub(crate) async fn append(
        &self,
        drafts: Vec<(i64, String)>,
        chain: Arc<ChainFn>,
    ) -> Result<Vec<u64>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(AuditJob {
                drafts,
                chain,
                done,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable {
        context: "append audit",
        detail: "the committing task stopped".into(),
    }
}

/// Splits a group into its answer channels and its work.
pub(crate) fn split(jobs: Vec<AuditJob>) -> (Vec<Answer>, Vec<Work>) {
    jobs.into_iter()
        .map(|j| (j.done, (j.drafts, j.chain)))
        .unzip()
}

/// Answers every caller of a group.
pub(crate) fn answer(answers: Vec<Answer>, result: Result<Vec<Vec<u64>>, StoreError>) {
    match result {
        Ok(seqs) => {
            for (done, seqs) in answers.into_iter().zip(seqs) {
                let _ = done.send(Ok(seqs));
            }
        }
        Err(e) => {
            for done in answers {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}

/// Chains every job's drafts after `(seq, prev)`.
pub(crate) fn chain_rows(
    work: &[Work],
    mut seq: u64,
    mut prev: Vec<u8>,
) -> Result<Chained, StoreError> {
    let mut rows = Vec::new();
    let mut all = Vec::with_capacity(work.len());
    for (drafts, chain) in work {
        let mut seqs = Vec::with_capacity(drafts.len());
        for (at, draft) in drafts {
            seq += 1;
            let (event, mac) = chain(seq, &prev, draft);
            let s = i64::try_from(seq).map_err(|_| StoreError::Corrupt {
                context: "append audit",
                detail: "seq overflow".into(),
            })?;
            rows.push((s, *at, event, mac.clone()));
            prev = mac;
            seqs.push(seq);
        }
        all.push(seqs);
    }
    Ok((rows, all, (seq, prev)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::Mutex;

    fn chain() -> Arc<ChainFn> {
        Arc::new(|seq: u64, _prev: &[u8], draft: &str| {
            (draft.to_owned(), seq.to_be_bytes().to_vec())
        })
    }

    /// Appends queued while a commit runs go to the next commit together, and every caller
    /// gets its own sequence numbers back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_queued_during_a_commit_are_committed_together() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started) = oneshot::channel::<()>();
        let (release, released) = oneshot::channel::<()>();
        let gate = Arc::new(Mutex::new(Some((started_tx, released))));
        let next = Arc::new(Mutex::new(0u64));
        let committer = {
            let sizes = sizes.clone();
            Committer::start(move |jobs: Vec<AuditJob>| {
                let sizes = sizes.clone();
                let gate = gate.lock().unwrap().take();
                let next = next.clone();
                async move {
                    sizes.lock().unwrap().push(jobs.len());
                    if let Some((started, released)) = gate {
                        started.send(()).unwrap();
                        released.await.unwrap();
                    }
                    let (answers, work) = split(jobs);
                    let head = *next.lock().unwrap();
                    let (_, seqs, (last, _)) = chain_rows(&work, head, Vec::new()).unwrap();
                    *next.lock().unwrap() = last;
                    answer(answers, Ok(seqs));
                }
            })
        };
        let committer = Arc::new(committer);
        let first = {
            let c = committer.clone();
            tokio::spawn(async move { c.append(vec![(0, "a".into())], chain()).await })
        };
        started.await.unwrap();
        let mut rest = Vec::new();
        for i in 0..10 {
            let c = committer.clone();
            rest.push(Box::pin(async move {
                c.append(vec![(0, format!("b{i}")), (0, format!("c{i}"))], chain())
                    .await
            }));
        }
        // Poll each of the ten once, which queues its drafts behind the running commit (a
        // fixed sleep instead would depend on how soon spawned tasks ran); then let it finish.
        std::future::poll_fn(|cx| {
            for f in &mut rest {
                assert!(
                    f.as_mut().poll(cx).is_pending(),
                    "answered before the commit"
                );
            }
            std::task::Poll::Ready(())
        })
        .await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), vec![1]);
        let mut seqs: Vec<u64> = Vec::new();
        for r in rest {
            let s = r.await.unwrap();
            assert_eq!(s.len(), 2);
            assert_eq!(s[1], s[0] + 1, "one caller's drafts stay contiguous");
            seqs.extend(s);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=21).collect::<Vec<u64>>());
        assert_eq!(*sizes.lock().unwrap(), vec![1, 10]);
    }

    #[tokio::test]
    async fn a_panicking_commit_fails_its_callers_and_the_next_append_works() {
        let first = Arc::new(Mutex::new(true));
        let committer = Committer::start(move |jobs: Vec<AuditJob>| {
            let first = std::mem::replace(&mut *first.lock().unwrap(), false);
            async move {
                assert!(!first, "the first commit panics");
                let (answers, work) = split(jobs);
                let (_, seqs, _) = chain_rows(&work, 0, Vec::new()).unwrap();
                answer(answers, Ok(seqs));
            }
        });
        let e = committer
            .append(vec![(0, "x".into())], chain())
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        assert_eq!(
            committer
                .append(vec![(0, "y".into())], chain())
                .await
                .unwrap(),
            vec![1]
        );
    }

    #[tokio::test]
    async fn a_stopped_committer_fails_closed() {
        let committer = Committer::start(|jobs: Vec<AuditJob>| async move {
            drop(jobs);
        });
        let e = committer
            .append(vec![(0, "x".into())], chain())
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    }
}
